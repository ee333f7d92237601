"""Kafka output of a processing relay: topics, message encoders and the producer.

Messages are encoded as Relay's store service writes them, so Sentry's consumers read
them unchanged. Encoders are pure functions returning the message bytes.
"""

from relay.kafka.attachments import (
    DEFAULT_ATTACHMENT_CHUNK_SIZE,
    DEFAULT_RETENTION_DAYS,
    UNNAMED_ATTACHMENT,
    AttachmentRef,
    chunk_attachment,
    encode_attachment_chunk,
    encode_attachment_message,
    new_attachment_id,
)
from relay.kafka.events import (
    encode_event_message,
    event_topic,
    safe_timestamp,
    sends_individual_attachments,
)
from relay.kafka.keys import partition_key_for, partitioner
from relay.kafka.outcomes import (
    DataCategory,
    Outcome,
    OutcomeCode,
    encode_outcome,
    format_outcome_timestamp,
    outcome_topic,
)
from relay.kafka.producer import (
    KafkaBudgetExceeded,
    KafkaMessageRejected,
    KafkaProduceError,
    KafkaProducer,
)
from relay.kafka.topics import (
    DEFAULT_TOPIC_NAMES,
    KafkaTopic,
    resolve_topics,
    topic_for_key,
    unused_topic_keys,
)
from relay.kafka.user_reports import encode_user_report_message
from relay.protocol.items import AttachmentType

__all__ = [
    "DEFAULT_ATTACHMENT_CHUNK_SIZE",
    "DEFAULT_RETENTION_DAYS",
    "DEFAULT_TOPIC_NAMES",
    "UNNAMED_ATTACHMENT",
    "AttachmentRef",
    "AttachmentType",
    "DataCategory",
    "KafkaBudgetExceeded",
    "KafkaMessageRejected",
    "KafkaProduceError",
    "KafkaProducer",
    "KafkaTopic",
    "Outcome",
    "OutcomeCode",
    "chunk_attachment",
    "encode_attachment_chunk",
    "encode_attachment_message",
    "encode_event_message",
    "encode_outcome",
    "encode_user_report_message",
    "event_topic",
    "format_outcome_timestamp",
    "new_attachment_id",
    "outcome_topic",
    "partition_key_for",
    "partitioner",
    "resolve_topics",
    "safe_timestamp",
    "sends_individual_attachments",
    "topic_for_key",
    "unused_topic_keys",
]
