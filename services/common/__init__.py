"""Code every service shares: settings, Kafka clients, Avro wire format, dead-lettering, logging."""
