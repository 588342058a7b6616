-- An example from the demo, not part of the pipeline: apply it on its own with
--   fraudstream ksql apply ksql/examples/10_masking.sql
--
-- The demo masked the user name ad hoc; as a one-off query:
--   fraudstream ksql query 'SELECT Id, MASK_LEFT(`USER`, 2) AS USER_MASKED
--     FROM creditcardfraud_source EMIT CHANGES LIMIT 5;'
-- As a persistent stream for consumers that must never see the names:
SET 'auto.offset.reset' = 'earliest';

CREATE STREAM IF NOT EXISTS creditcardfraud_masked
  WITH (KAFKA_TOPIC = 'creditcardfraud_masked', VALUE_FORMAT = 'JSON') AS
SELECT
  ID_KEY,
  Id,
  MASK_LEFT(`USER`, 2) AS USER_MASKED,
  MASK(`USER`) AS USER_FULLY_MASKED,
  MASK_KEEP_RIGHT(`TIMESTAMP`, 8) AS TIMESTAMP_TIME_ONLY,
  Amount
FROM creditcardfraud_source
EMIT CHANGES;
