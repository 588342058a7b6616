"""The embedded Apache Kafka broker: real Kafka 4.x in KRaft mode, one node, jars from Maven."""
