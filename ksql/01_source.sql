-- Applied by `fraudstream ksql apply` in file-name order; standard ksqlDB syntax only, so the
-- same files run unchanged on a real ksqlDB server (docker compose).
--
-- The raw transactions as the producer writes them: the demo's creditcard_extended.csv layout,
-- 34 comma-separated fields, `Class` quoted and empty when the transaction is unlabelled (an
-- empty DELIMITED field reads as NULL). TIMESTAMP, USER and TIME are backquoted because they are
-- also type names or keywords; upper-case inside the quotes keeps the usual column names.
-- ID_KEY is the record's Kafka key (the producer keys each record by its Id, as text), so the
-- Avro streams below keep Id as their key too.
CREATE STREAM IF NOT EXISTS creditcardfraud_source (
  ID_KEY VARCHAR KEY,
  Id BIGINT,
  `TIMESTAMP` VARCHAR,
  `USER` VARCHAR,
  `TIME` INT,
  V1 DOUBLE, V2 DOUBLE, V3 DOUBLE, V4 DOUBLE, V5 DOUBLE, V6 DOUBLE, V7 DOUBLE,
  V8 DOUBLE, V9 DOUBLE, V10 DOUBLE, V11 DOUBLE, V12 DOUBLE, V13 DOUBLE, V14 DOUBLE,
  V15 DOUBLE, V16 DOUBLE, V17 DOUBLE, V18 DOUBLE, V19 DOUBLE, V20 DOUBLE, V21 DOUBLE,
  V22 DOUBLE, V23 DOUBLE, V24 DOUBLE, V25 DOUBLE, V26 DOUBLE, V27 DOUBLE, V28 DOUBLE,
  Amount DOUBLE,
  Class VARCHAR
) WITH (
  KAFKA_TOPIC = 'creditcardfraud_source',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'DELIMITED',
  PARTITIONS = 3
);
