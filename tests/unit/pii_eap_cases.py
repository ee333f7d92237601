# ruff: noqa: E501
"""Expected attribute scrubbing per rule, from Relay's `relay-pii/src/eap.rs` snapshot tests.

Each case: (rule, value, attributes after scrubbing) for an attribute named
`"<rule>|<value>"` holding `value`, scrubbed by piiConfig `{"applications": {"$string": [rule]}}`
plus datascrubbingSettings `scrubData` without defaults.
"""

from typing import Any

CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "@ip",
        "127.0.0.1",
        {
            "@ip|127.0.0.1": {"type": "string", "value": "[ip]"},
            "_meta": {"@ip|127.0.0.1": {"value": {"": {"rem": [["@ip", "s", 0, 4]], "len": 9}}}},
        },
    ),
    (
        "@ip:replace",
        "127.0.0.1",
        {
            "@ip:replace|127.0.0.1": {"type": "string", "value": "[ip]"},
            "_meta": {
                "@ip:replace|127.0.0.1": {
                    "value": {"": {"rem": [["@ip:replace", "s", 0, 4]], "len": 9}}
                }
            },
        },
    ),
    (
        "@ip:remove",
        "127.0.0.1",
        {
            "@ip:remove|127.0.0.1": {"type": "string", "value": ""},
            "_meta": {
                "@ip:remove|127.0.0.1": {
                    "value": {"": {"rem": [["@ip:remove", "x", 0, 0]], "len": 9}}
                }
            },
        },
    ),
    (
        "@ip:mask",
        "127.0.0.1",
        {
            "@ip:mask|127.0.0.1": {"type": "string", "value": "*********"},
            "_meta": {
                "@ip:mask|127.0.0.1": {"value": {"": {"rem": [["@ip:mask", "m", 0, 9]], "len": 9}}}
            },
        },
    ),
    (
        "@email",
        "test@example.com",
        {
            "@email|test@example.com": {"type": "string", "value": "[email]"},
            "_meta": {
                "@email|test@example.com": {
                    "value": {"": {"rem": [["@email", "s", 0, 7]], "len": 16}}
                }
            },
        },
    ),
    (
        "@email:replace",
        "test@example.com",
        {
            "@email:replace|test@example.com": {"type": "string", "value": "[email]"},
            "_meta": {
                "@email:replace|test@example.com": {
                    "value": {"": {"rem": [["@email:replace", "s", 0, 7]], "len": 16}}
                }
            },
        },
    ),
    (
        "@email:remove",
        "test@example.com",
        {
            "@email:remove|test@example.com": {"type": "string", "value": ""},
            "_meta": {
                "@email:remove|test@example.com": {
                    "value": {"": {"rem": [["@email:remove", "x", 0, 0]], "len": 16}}
                }
            },
        },
    ),
    (
        "@email:mask",
        "test@example.com",
        {
            "@email:mask|test@example.com": {"type": "string", "value": "****************"},
            "_meta": {
                "@email:mask|test@example.com": {
                    "value": {"": {"rem": [["@email:mask", "m", 0, 16]], "len": 16}}
                }
            },
        },
    ),
    (
        "@creditcard",
        "4242424242424242",
        {
            "@creditcard|4242424242424242": {"type": "string", "value": "[creditcard]"},
            "_meta": {
                "@creditcard|4242424242424242": {
                    "value": {"": {"rem": [["@creditcard", "s", 0, 12]], "len": 16}}
                }
            },
        },
    ),
    (
        "@creditcard:replace",
        "4242424242424242",
        {
            "@creditcard:replace|4242424242424242": {"type": "string", "value": "[creditcard]"},
            "_meta": {
                "@creditcard:replace|4242424242424242": {
                    "value": {"": {"rem": [["@creditcard:replace", "s", 0, 12]], "len": 16}}
                }
            },
        },
    ),
    (
        "@creditcard:remove",
        "4242424242424242",
        {
            "@creditcard:remove|4242424242424242": {"type": "string", "value": ""},
            "_meta": {
                "@creditcard:remove|4242424242424242": {
                    "value": {"": {"rem": [["@creditcard:remove", "x", 0, 0]], "len": 16}}
                }
            },
        },
    ),
    (
        "@creditcard:mask",
        "4242424242424242",
        {
            "@creditcard:mask|4242424242424242": {"type": "string", "value": "****************"},
            "_meta": {
                "@creditcard:mask|4242424242424242": {
                    "value": {"": {"rem": [["@creditcard:mask", "m", 0, 16]], "len": 16}}
                }
            },
        },
    ),
    (
        "@iban",
        "DE89370400440532013000",
        {
            "@iban|DE89370400440532013000": {"type": "string", "value": "[iban]"},
            "_meta": {
                "@iban|DE89370400440532013000": {
                    "value": {"": {"rem": [["@iban", "s", 0, 6]], "len": 22}}
                }
            },
        },
    ),
    (
        "@iban:replace",
        "DE89370400440532013000",
        {
            "@iban:replace|DE89370400440532013000": {"type": "string", "value": "[iban]"},
            "_meta": {
                "@iban:replace|DE89370400440532013000": {
                    "value": {"": {"rem": [["@iban:replace", "s", 0, 6]], "len": 22}}
                }
            },
        },
    ),
    (
        "@iban:remove",
        "DE89370400440532013000",
        {
            "@iban:remove|DE89370400440532013000": {"type": "string", "value": ""},
            "_meta": {
                "@iban:remove|DE89370400440532013000": {
                    "value": {"": {"rem": [["@iban:remove", "x", 0, 0]], "len": 22}}
                }
            },
        },
    ),
    (
        "@iban:mask",
        "DE89370400440532013000",
        {
            "@iban:mask|DE89370400440532013000": {
                "type": "string",
                "value": "**********************",
            },
            "_meta": {
                "@iban:mask|DE89370400440532013000": {
                    "value": {"": {"rem": [["@iban:mask", "m", 0, 22]], "len": 22}}
                }
            },
        },
    ),
    (
        "@mac",
        "4a:00:04:10:9b:50",
        {
            "@mac|4a:00:04:10:9b:50": {"type": "string", "value": "*****************"},
            "_meta": {
                "@mac|4a:00:04:10:9b:50": {
                    "value": {"": {"rem": [["@mac", "m", 0, 17]], "len": 17}}
                }
            },
        },
    ),
    (
        "@mac:replace",
        "4a:00:04:10:9b:50",
        {
            "@mac:replace|4a:00:04:10:9b:50": {"type": "string", "value": "[mac]"},
            "_meta": {
                "@mac:replace|4a:00:04:10:9b:50": {
                    "value": {"": {"rem": [["@mac:replace", "s", 0, 5]], "len": 17}}
                }
            },
        },
    ),
    (
        "@mac:remove",
        "4a:00:04:10:9b:50",
        {
            "@mac:remove|4a:00:04:10:9b:50": {"type": "string", "value": ""},
            "_meta": {
                "@mac:remove|4a:00:04:10:9b:50": {
                    "value": {"": {"rem": [["@mac:remove", "x", 0, 0]], "len": 17}}
                }
            },
        },
    ),
    (
        "@mac:mask",
        "4a:00:04:10:9b:50",
        {
            "@mac:mask|4a:00:04:10:9b:50": {"type": "string", "value": "*****************"},
            "_meta": {
                "@mac:mask|4a:00:04:10:9b:50": {
                    "value": {"": {"rem": [["@mac:mask", "m", 0, 17]], "len": 17}}
                }
            },
        },
    ),
    (
        "@uuid",
        "ceee0822-ed8f-4622-b2a3-789e73e75cd1",
        {
            "@uuid|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {
                "type": "string",
                "value": "************************************",
            },
            "_meta": {
                "@uuid|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {
                    "value": {"": {"rem": [["@uuid", "m", 0, 36]], "len": 36}}
                }
            },
        },
    ),
    (
        "@uuid:replace",
        "ceee0822-ed8f-4622-b2a3-789e73e75cd1",
        {
            "@uuid:replace|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {
                "type": "string",
                "value": "[uuid]",
            },
            "_meta": {
                "@uuid:replace|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {
                    "value": {"": {"rem": [["@uuid:replace", "s", 0, 6]], "len": 36}}
                }
            },
        },
    ),
    (
        "@uuid:remove",
        "ceee0822-ed8f-4622-b2a3-789e73e75cd1",
        {
            "@uuid:remove|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {"type": "string", "value": ""},
            "_meta": {
                "@uuid:remove|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {
                    "value": {"": {"rem": [["@uuid:remove", "x", 0, 0]], "len": 36}}
                }
            },
        },
    ),
    (
        "@uuid:mask",
        "ceee0822-ed8f-4622-b2a3-789e73e75cd1",
        {
            "@uuid:mask|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {
                "type": "string",
                "value": "************************************",
            },
            "_meta": {
                "@uuid:mask|ceee0822-ed8f-4622-b2a3-789e73e75cd1": {
                    "value": {"": {"rem": [["@uuid:mask", "m", 0, 36]], "len": 36}}
                }
            },
        },
    ),
    (
        "@imei",
        "356938035643809",
        {
            "@imei|356938035643809": {"type": "string", "value": "[imei]"},
            "_meta": {
                "@imei|356938035643809": {"value": {"": {"rem": [["@imei", "s", 0, 6]], "len": 15}}}
            },
        },
    ),
    (
        "@imei:replace",
        "356938035643809",
        {
            "@imei:replace|356938035643809": {"type": "string", "value": "[imei]"},
            "_meta": {
                "@imei:replace|356938035643809": {
                    "value": {"": {"rem": [["@imei:replace", "s", 0, 6]], "len": 15}}
                }
            },
        },
    ),
    (
        "@imei:remove",
        "356938035643809",
        {
            "@imei:remove|356938035643809": {"type": "string", "value": ""},
            "_meta": {
                "@imei:remove|356938035643809": {
                    "value": {"": {"rem": [["@imei:remove", "x", 0, 0]], "len": 15}}
                }
            },
        },
    ),
    (
        "@pemkey",
        "-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----",
        {
            "@pemkey|-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----": {
                "type": "string",
                "value": "-----BEGIN EC PRIVATE KEY-----\n[pemkey]\n-----END EC PRIVATE KEY-----",
            },
            "_meta": {
                "@pemkey|-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----": {
                    "value": {"": {"rem": [["@pemkey", "s", 31, 39]], "len": 124}}
                }
            },
        },
    ),
    (
        "@pemkey:replace",
        "-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----",
        {
            "@pemkey:replace|-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----": {
                "type": "string",
                "value": "-----BEGIN EC PRIVATE KEY-----\n[pemkey]\n-----END EC PRIVATE KEY-----",
            },
            "_meta": {
                "@pemkey:replace|-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----": {
                    "value": {"": {"rem": [["@pemkey:replace", "s", 31, 39]], "len": 124}}
                }
            },
        },
    ),
    (
        "@pemkey:remove",
        "-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----",
        {
            "@pemkey:remove|-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----": {
                "type": "string",
                "value": "-----BEGIN EC PRIVATE KEY-----\n\n-----END EC PRIVATE KEY-----",
            },
            "_meta": {
                "@pemkey:remove|-----BEGIN EC PRIVATE KEY-----\nMIHbAgEBBEFbLvIaAaez3q0u6BQYMHZ28B7iSdMPPaODUMGkdorl3ShgTbYmzqGL\n-----END EC PRIVATE KEY-----": {
                    "value": {"": {"rem": [["@pemkey:remove", "x", 31, 31]], "len": 124}}
                }
            },
        },
    ),
    (
        "@urlauth",
        "https://username:password@example.com/",
        {
            "@urlauth|https://username:password@example.com/": {
                "type": "string",
                "value": "https://[auth]@example.com/",
            },
            "_meta": {
                "@urlauth|https://username:password@example.com/": {
                    "value": {"": {"rem": [["@urlauth", "s", 8, 14]], "len": 38}}
                }
            },
        },
    ),
    (
        "@urlauth:replace",
        "https://username:password@example.com/",
        {
            "@urlauth:replace|https://username:password@example.com/": {
                "type": "string",
                "value": "https://[auth]@example.com/",
            },
            "_meta": {
                "@urlauth:replace|https://username:password@example.com/": {
                    "value": {"": {"rem": [["@urlauth:replace", "s", 8, 14]], "len": 38}}
                }
            },
        },
    ),
    (
        "@urlauth:remove",
        "https://username:password@example.com/",
        {
            "@urlauth:remove|https://username:password@example.com/": {
                "type": "string",
                "value": "https://@example.com/",
            },
            "_meta": {
                "@urlauth:remove|https://username:password@example.com/": {
                    "value": {"": {"rem": [["@urlauth:remove", "x", 8, 8]], "len": 38}}
                }
            },
        },
    ),
    (
        "@urlauth:mask",
        "https://username:password@example.com/",
        {
            "@urlauth:mask|https://username:password@example.com/": {
                "type": "string",
                "value": "https://*****************@example.com/",
            },
            "_meta": {
                "@urlauth:mask|https://username:password@example.com/": {
                    "value": {"": {"rem": [["@urlauth:mask", "m", 8, 25]], "len": 38}}
                }
            },
        },
    ),
    (
        "@usssn",
        "078-05-1120",
        {
            "@usssn|078-05-1120": {"type": "string", "value": "***********"},
            "_meta": {
                "@usssn|078-05-1120": {"value": {"": {"rem": [["@usssn", "m", 0, 11]], "len": 11}}}
            },
        },
    ),
    (
        "@usssn:replace",
        "078-05-1120",
        {
            "@usssn:replace|078-05-1120": {"type": "string", "value": "[us-ssn]"},
            "_meta": {
                "@usssn:replace|078-05-1120": {
                    "value": {"": {"rem": [["@usssn:replace", "s", 0, 8]], "len": 11}}
                }
            },
        },
    ),
    (
        "@usssn:remove",
        "078-05-1120",
        {
            "@usssn:remove|078-05-1120": {"type": "string", "value": ""},
            "_meta": {
                "@usssn:remove|078-05-1120": {
                    "value": {"": {"rem": [["@usssn:remove", "x", 0, 0]], "len": 11}}
                }
            },
        },
    ),
    (
        "@usssn:mask",
        "078-05-1120",
        {
            "@usssn:mask|078-05-1120": {"type": "string", "value": "***********"},
            "_meta": {
                "@usssn:mask|078-05-1120": {
                    "value": {"": {"rem": [["@usssn:mask", "m", 0, 11]], "len": 11}}
                }
            },
        },
    ),
    (
        "@userpath",
        "/Users/john/Documents",
        {
            "@userpath|/Users/john/Documents": {
                "type": "string",
                "value": "/Users/[user]/Documents",
            },
            "_meta": {
                "@userpath|/Users/john/Documents": {
                    "value": {"": {"rem": [["@userpath", "s", 7, 13]], "len": 21}}
                }
            },
        },
    ),
    (
        "@userpath:replace",
        "/Users/john/Documents",
        {
            "@userpath:replace|/Users/john/Documents": {
                "type": "string",
                "value": "/Users/[user]/Documents",
            },
            "_meta": {
                "@userpath:replace|/Users/john/Documents": {
                    "value": {"": {"rem": [["@userpath:replace", "s", 7, 13]], "len": 21}}
                }
            },
        },
    ),
    (
        "@userpath:remove",
        "/Users/john/Documents",
        {
            "@userpath:remove|/Users/john/Documents": {
                "type": "string",
                "value": "/Users//Documents",
            },
            "_meta": {
                "@userpath:remove|/Users/john/Documents": {
                    "value": {"": {"rem": [["@userpath:remove", "x", 7, 7]], "len": 21}}
                }
            },
        },
    ),
    (
        "@userpath:mask",
        "/Users/john/Documents",
        {
            "@userpath:mask|/Users/john/Documents": {
                "type": "string",
                "value": "/Users/****/Documents",
            },
            "_meta": {
                "@userpath:mask|/Users/john/Documents": {
                    "value": {"": {"rem": [["@userpath:mask", "m", 7, 11]], "len": 21}}
                }
            },
        },
    ),
    (
        "@password",
        "my_password_123",
        {
            "@password|my_password_123": {"type": "string", "value": ""},
            "_meta": {
                "@password|my_password_123": {
                    "value": {"": {"rem": [["@password", "x", 0, 0]], "len": 15}}
                }
            },
        },
    ),
    (
        "@password:remove",
        "my_password_123",
        {
            "@password:remove|my_password_123": {"type": "string", "value": ""},
            "_meta": {
                "@password:remove|my_password_123": {
                    "value": {"": {"rem": [["@password:remove", "x", 0, 0]], "len": 15}}
                }
            },
        },
    ),
    (
        "@password:replace",
        "my_password_123",
        {
            "@password:replace|my_password_123": {"type": "string", "value": "[password]"},
            "_meta": {
                "@password:replace|my_password_123": {
                    "value": {"": {"rem": [["@password:replace", "s", 0, 10]], "len": 15}}
                }
            },
        },
    ),
    (
        "@password:mask",
        "my_password_123",
        {
            "@password:mask|my_password_123": {"type": "string", "value": "***************"},
            "_meta": {
                "@password:mask|my_password_123": {
                    "value": {"": {"rem": [["@password:mask", "m", 0, 15]], "len": 15}}
                }
            },
        },
    ),
    (
        "@bearer",
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        {
            "@bearer|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                "type": "string",
                "value": "Bearer [token]",
            },
            "_meta": {
                "@bearer|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                    "value": {"": {"rem": [["@bearer", "s", 0, 14]], "len": 43}}
                }
            },
        },
    ),
    (
        "@bearer:replace",
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        {
            "@bearer:replace|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                "type": "string",
                "value": "Bearer [token]",
            },
            "_meta": {
                "@bearer:replace|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                    "value": {"": {"rem": [["@bearer:replace", "s", 0, 14]], "len": 43}}
                }
            },
        },
    ),
    (
        "@bearer:remove",
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        {
            "@bearer:remove|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                "type": "string",
                "value": "",
            },
            "_meta": {
                "@bearer:remove|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                    "value": {"": {"rem": [["@bearer:remove", "x", 0, 0]], "len": 43}}
                }
            },
        },
    ),
    (
        "@bearer:mask",
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
        {
            "@bearer:mask|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                "type": "string",
                "value": "*******************************************",
            },
            "_meta": {
                "@bearer:mask|Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9": {
                    "value": {"": {"rem": [["@bearer:mask", "m", 0, 43]], "len": 43}}
                }
            },
        },
    ),
]

#: `test_scrub_attributes_pii_default_rules`: span attributes, datascrubbingSettings only.
DEFAULT_RULES_SETTINGS: dict[str, Any] = {
    "scrubData": True,
    "scrubDefaults": True,
    "scrubIpAddresses": True,
    "excludeFields": ["public_data"],
    "sensitiveFields": ["value", "very_sensitive_data"],
}
DEFAULT_RULES_INPUT: dict[str, Any] = {
    "sentry.description": {"type": "string", "value": "secret123"},
    "user.name": {"type": "string", "value": "secret123"},
    "sentry.release": {"type": "string", "value": "secret123"},
    "url.domain": {"type": "string", "value": "secret123"},
    "url.path": {"type": "string", "value": "secret123"},
    "password": {"type": "string", "value": "secret123"},
    "secret": {"type": "string", "value": "topsecret"},
    "api_key": {"type": "string", "value": "sk-1234567890abcdef"},
    "auth_token": {"type": "string", "value": "bearer_token_123"},
    "credit_card": {"type": "string", "value": "4571234567890111"},
    "visa_card": {"type": "string", "value": "4571 2345 6789 0111"},
    "bank_account": {"type": "string", "value": "DE89370400440532013000"},
    "iban_code": {"type": "string", "value": "NO9386011117945"},
    "authorization": {"type": "string", "value": "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"},
    "private_key": {
        "type": "string",
        "value": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKB\n-----END PRIVATE KEY-----",
    },
    "database_url": {"type": "string", "value": "https://username:password@example.com/db"},
    "file_path": {"type": "string", "value": "C:\\Users\\john\\Documents\\secret.txt"},
    "unix_path": {"type": "string", "value": "/home/alice/private/data.json"},
    "social_security": {"type": "string", "value": "078-05-1120"},
    "user_email": {"type": "string", "value": "john.doe@example.com"},
    "client_ip": {"type": "string", "value": "192.168.1.100"},
    "ipv6_addr": {"type": "string", "value": "2001:0db8:85a3:0000:0000:8a2e:0370:7334"},
    "mac_address": {"type": "string", "value": "4a:00:04:10:9b:50"},
    "session_id": {"type": "string", "value": "ceee0822-ed8f-4622-b2a3-789e73e75cd1"},
    "device_imei": {"type": "string", "value": "356938035643809"},
    "public_data": {"type": "string", "value": "public_data"},
    "very_sensitive_data": {"type": "string", "value": "very_sensitive_data"},
}
DEFAULT_RULES_EXPECTED: dict[str, Any] = {
    "api_key": {"type": "string", "value": "[Filtered]"},
    "auth_token": {"type": "string", "value": "[Filtered]"},
    "authorization": {"type": "string", "value": "[Filtered]"},
    "bank_account": {"type": "string", "value": "[Filtered]"},
    "client_ip": {"type": "string", "value": "[ip]"},
    "credit_card": {"type": "string", "value": "[Filtered]"},
    "database_url": {"type": "string", "value": "[Filtered]"},
    "device_imei": {"type": "string", "value": "356938035643809"},
    "file_path": {"type": "string", "value": "[Filtered]"},
    "iban_code": {"type": "string", "value": "[Filtered]"},
    "ipv6_addr": {"type": "string", "value": "[ip]"},
    "mac_address": {"type": "string", "value": "4a:00:04:10:9b:50"},
    "password": {"type": "string", "value": "[Filtered]"},
    "private_key": {"type": "string", "value": "[Filtered]"},
    "public_data": {"type": "string", "value": "public_data"},
    "secret": {"type": "string", "value": "[Filtered]"},
    "sentry.description": {"type": "string", "value": "secret123"},
    "sentry.release": {"type": "string", "value": "secret123"},
    "session_id": {"type": "string", "value": "ceee0822-ed8f-4622-b2a3-789e73e75cd1"},
    "social_security": {"type": "string", "value": "[Filtered]"},
    "unix_path": {"type": "string", "value": "/home/alice/private/data.json"},
    "url.domain": {"type": "string", "value": "secret123"},
    "url.path": {"type": "string", "value": "[Filtered]"},
    "user.name": {"type": "string", "value": "[Filtered]"},
    "user_email": {"type": "string", "value": "john.doe@example.com"},
    "very_sensitive_data": {"type": "string", "value": "[Filtered]"},
    "visa_card": {"type": "string", "value": "[Filtered]"},
    "_meta": {
        "api_key": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 19}}},
        "auth_token": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 16}}},
        "authorization": {"value": {"": {"rem": [["@bearer:filter", "s", 0, 10]], "len": 43}}},
        "bank_account": {"value": {"": {"rem": [["@iban:filter", "s", 0, 10]], "len": 22}}},
        "client_ip": {"value": {"": {"rem": [["@ip:replace", "s", 0, 4]], "len": 13}}},
        "credit_card": {"value": {"": {"rem": [["@creditcard:filter", "s", 0, 10]], "len": 16}}},
        "database_url": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 40}}},
        "file_path": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 34}}},
        "iban_code": {"value": {"": {"rem": [["@iban:filter", "s", 0, 10]], "len": 15}}},
        "ipv6_addr": {"value": {"": {"rem": [["@ip:replace", "s", 0, 4]], "len": 39}}},
        "password": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 9}}},
        "private_key": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 118}}},
        "secret": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 9}}},
        "social_security": {"value": {"": {"rem": [["@usssn:filter", "s", 0, 10]], "len": 11}}},
        "url.path": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 9}}},
        "user.name": {"value": {"": {"rem": [["@password:filter", "s", 0, 10]], "len": 9}}},
        "very_sensitive_data": {"value": {"": {"rem": [["strip-fields", "s", 0, 10]], "len": 19}}},
        "visa_card": {"value": {"": {"rem": [["@creditcard:filter", "s", 0, 10]], "len": 19}}},
    },
}
