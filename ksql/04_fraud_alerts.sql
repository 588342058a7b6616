-- Applied by `fraudstream ksql apply` in file-name order; standard ksqlDB syntax only, so the
-- same files run unchanged on a real ksqlDB server (docker compose).
--
-- The scorer's output, declared so alerts can be watched over REST:
--   SELECT * FROM FRAUD_ALERTS EMIT CHANGES;
-- The columns match the Avro schema the scorer registers (services/scorer/records.py);
-- SCORED_AT is epoch milliseconds. EXPLANATION (optional, null from scorers before issue 17 or
-- run with --no-explain) holds the top 5 features of the reconstruction error; how to evolve
-- this schema again: docs/alerts-schema.md. An existing FRAUD_ALERTS keeps its old columns
-- (IF NOT EXISTS): drop it first (DROP STREAM FRAUD_ALERTS;) to see the new one.
CREATE STREAM IF NOT EXISTS FRAUD_ALERTS (
  ID BIGINT,
  `USER` VARCHAR,
  `TIMESTAMP` VARCHAR,
  AMOUNT DOUBLE,
  SCORE DOUBLE,
  THRESHOLD DOUBLE,
  MODEL_VERSION VARCHAR,
  SCORED_AT BIGINT,
  CLASS VARCHAR,
  EXPLANATION ARRAY<STRUCT<
    FEATURE VARCHAR,
    SHARE DOUBLE,
    `VALUE` DOUBLE,
    NORMAL_LOW DOUBLE,
    NORMAL_HIGH DOUBLE
  >>
) WITH (
  KAFKA_TOPIC = 'fraud_alerts',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 1
);
