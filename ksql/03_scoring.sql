-- Applied by `fraudstream ksql apply` in file-name order; standard ksqlDB syntax only, so the
-- same files run unchanged on a real ksqlDB server (docker compose).
--
-- Every transaction, labelled or not, as Avro with the same fields: what the scorer scores.
-- ID, TIMESTAMP and USER stay in the value because the alerts carry them.
SET 'auto.offset.reset' = 'earliest';

CREATE STREAM IF NOT EXISTS creditcardfraud_scoring_avro
  WITH (KAFKA_TOPIC = 'creditcardfraud_scoring_avro', VALUE_FORMAT = 'AVRO') AS
SELECT
  ID_KEY, Id, `TIMESTAMP`, `USER`, `TIME`,
  V1, V2, V3, V4, V5, V6, V7,
  V8, V9, V10, V11, V12, V13, V14,
  V15, V16, V17, V18, V19, V20, V21,
  V22, V23, V24, V25, V26, V27, V28,
  Amount, Class
FROM creditcardfraud_source
EMIT CHANGES;
