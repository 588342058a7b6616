-- An example, not part of the pipeline: apply it on its own (after ksql/01_source.sql) with
--   fraudstream ksql apply ksql/examples/40_velocity.sql
--
-- Per-user velocity, the features a fraud team checks first ("5 transactions in 10 minutes",
-- "this amount against the user's last ones"), as tables a notebook pull-queries by user:
--   SELECT * FROM USER_VELOCITY_10M WHERE `USER` = 'u42';
--   SELECT * FROM USER_VELOCITY_1H WHERE `USER` = 'u42' AND WINDOWSTART >= 1700000000000;
--   SELECT * FROM USER_LAST_AMOUNTS WHERE `USER` = 'u42';
-- Windows follow the records' Kafka timestamps (when the producer sent them).
SET 'auto.offset.reset' = 'earliest';

-- The aggregations read a JSON copy of (USER, Amount): the source is DELIMITED, which cannot hold
-- the intermediate state ksqlDB keeps for LATEST_BY_OFFSET (it refuses the statement otherwise).
CREATE STREAM IF NOT EXISTS creditcardfraud_amounts
  WITH (KAFKA_TOPIC = 'creditcardfraud_amounts', VALUE_FORMAT = 'JSON') AS
SELECT ID_KEY, `USER`, Amount
FROM creditcardfraud_source
EMIT CHANGES;

-- Count and sum of amounts per user in 10-minute tumbling windows.
CREATE TABLE IF NOT EXISTS USER_VELOCITY_10M
  WITH (KAFKA_TOPIC = 'user_velocity_10m', VALUE_FORMAT = 'JSON') AS
SELECT
  `USER`,
  COUNT(*) AS TX_COUNT,
  SUM(Amount) AS AMOUNT_SUM
FROM creditcardfraud_amounts
WINDOW TUMBLING (SIZE 10 MINUTES)
GROUP BY `USER`
EMIT CHANGES;

-- The same over the last hour, advancing every 10 minutes (each record is in 6 windows).
CREATE TABLE IF NOT EXISTS USER_VELOCITY_1H
  WITH (KAFKA_TOPIC = 'user_velocity_1h', VALUE_FORMAT = 'JSON') AS
SELECT
  `USER`,
  COUNT(*) AS TX_COUNT,
  SUM(Amount) AS AMOUNT_SUM
FROM creditcardfraud_amounts
WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 10 MINUTES)
GROUP BY `USER`
EMIT CHANGES;

-- The last 5 amounts of each user, oldest first.
CREATE TABLE IF NOT EXISTS USER_LAST_AMOUNTS
  WITH (KAFKA_TOPIC = 'user_last_amounts', VALUE_FORMAT = 'JSON') AS
SELECT
  `USER`,
  LATEST_BY_OFFSET(Amount, 5) AS LAST_AMOUNTS,
  COUNT(*) AS TX_COUNT
FROM creditcardfraud_amounts
GROUP BY `USER`
EMIT CHANGES;
