-- An example from the demo, not part of the pipeline: apply it on its own with
--   fraudstream ksql apply ksql/examples/30_per_user_join.sql
--
-- The demo's per-user enrichment: transactions joined with a USERS table, keeping the premium
-- customers' suspicious-looking rows: a stream-table join, run by the project's KSQL server and
-- by ksqlDB alike. The demo wrote into the preprocessed topic, this writes into its own so it
-- cannot disturb training.
CREATE TABLE IF NOT EXISTS USERS (
  USERID VARCHAR PRIMARY KEY,
  CITY VARCHAR,
  LEVEL VARCHAR
) WITH (KAFKA_TOPIC = 'users', VALUE_FORMAT = 'JSON', PARTITIONS = 1);

SET 'auto.offset.reset' = 'earliest';

CREATE STREAM IF NOT EXISTS creditcardfraud_per_user
  WITH (KAFKA_TOPIC = 'creditcardfraud_per_user', VALUE_FORMAT = 'AVRO') AS
SELECT
  c.Id AS ID,
  c.`USER` AS `USER`,
  u.CITY AS CITY,
  c.`TIME` AS `TIME`,
  c.V1 AS V1,
  c.V2 AS V2,
  c.Amount AS AMOUNT,
  c.Class AS CLASS
FROM creditcardfraud_source c
  INNER JOIN USERS u ON c.`USER` = u.USERID
WHERE c.V1 > 5 AND c.V2 IS NOT NULL AND u.CITY LIKE 'Premium%'
EMIT CHANGES;
