-- An example, not part of the pipeline: transactions written as PROTOBUF instead of DELIMITED,
-- turned into the same Avro streams the trainer and the scorer read. Apply ksql/ first, then:
--   fraudstream produce --csv data.csv --format protobuf   (topic creditcardfraud_source_protobuf)
--   fraudstream ksql apply ksql/examples/51_protobuf_to_avro.sql
--
-- The producer writes PROTOBUF (Confluent's ProtobufSerializer framing:
-- magic byte, schema id, message indexes, message); it registers the value schema under
-- creditcardfraud_source_protobuf-value, so the stream declares only its key: the value
-- columns (ID, TIMESTAMP, USER, TIME, V1..V28, AMOUNT, CLASS) come from the registry.
-- The two queries write into the topics of ksql/02 and ksql/03 (as the demo's per-user stream
-- did), with the same Avro schema, so nothing downstream changes; IF NOT EXISTS keeps
-- re-applying harmless.
SET 'auto.offset.reset' = 'earliest';

CREATE STREAM IF NOT EXISTS creditcardfraud_source_protobuf (ID_KEY VARCHAR KEY)
  WITH (KAFKA_TOPIC = 'creditcardfraud_source_protobuf', KEY_FORMAT = 'KAFKA',
        VALUE_FORMAT = 'PROTOBUF');

CREATE STREAM IF NOT EXISTS creditcardfraud_preprocessed_from_protobuf
  WITH (KAFKA_TOPIC = 'creditcardfraud_preprocessed_avro', VALUE_FORMAT = 'AVRO') AS
SELECT
  ID_KEY, ID, `TIMESTAMP`, `USER`, `TIME`,
  V1, V2, V3, V4, V5, V6, V7,
  V8, V9, V10, V11, V12, V13, V14,
  V15, V16, V17, V18, V19, V20, V21,
  V22, V23, V24, V25, V26, V27, V28,
  AMOUNT, CLASS
FROM creditcardfraud_source_protobuf
WHERE CLASS IS NOT NULL
EMIT CHANGES;

CREATE STREAM IF NOT EXISTS creditcardfraud_scoring_from_protobuf
  WITH (KAFKA_TOPIC = 'creditcardfraud_scoring_avro', VALUE_FORMAT = 'AVRO') AS
SELECT
  ID_KEY, ID, `TIMESTAMP`, `USER`, `TIME`,
  V1, V2, V3, V4, V5, V6, V7,
  V8, V9, V10, V11, V12, V13, V14,
  V15, V16, V17, V18, V19, V20, V21,
  V22, V23, V24, V25, V26, V27, V28,
  AMOUNT, CLASS
FROM creditcardfraud_source_protobuf
EMIT CHANGES;
