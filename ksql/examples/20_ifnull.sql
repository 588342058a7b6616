-- An example from the demo, not part of the pipeline: apply it on its own with
--   fraudstream ksql apply ksql/examples/20_ifnull.sql
--
-- The demo replaced a missing label ad hoc with IFNULL(Class, -1); Class is a string, and
-- ksqlDB's IFNULL wants both arguments of one type, so the default is the string '-1':
--   fraudstream ksql query "SELECT Id, IFNULL(Class, '-1') AS CLASS FROM creditcardfraud_source EMIT CHANGES LIMIT 5;"
SET 'auto.offset.reset' = 'earliest';

CREATE STREAM IF NOT EXISTS creditcardfraud_labelled_or_unknown
  WITH (KAFKA_TOPIC = 'creditcardfraud_labelled_or_unknown', VALUE_FORMAT = 'JSON') AS
SELECT
  ID_KEY,
  Id,
  Amount,
  IFNULL(Class, '-1') AS CLASS,
  COALESCE(Class, 'unlabelled') AS LABEL_TEXT
FROM creditcardfraud_source
EMIT CHANGES;
