"""Topic names and record layouts fixed by DESIGN.md."""

from __future__ import annotations

SOURCE_TOPIC = "creditcardfraud_source"
PREPROCESSED_TOPIC = "creditcardfraud_preprocessed_avro"
SCORING_TOPIC = "creditcardfraud_scoring_avro"
ALERTS_TOPIC = "fraud_alerts"
MODELS_TOPIC = "fraudstream_models"
DLQ_TOPIC = "creditcardfraud_dlq"
FEEDBACK_TOPIC = "fraud_feedback"
USERS_TOPIC = "users"
SCHEMAS_TOPIC = "_schemas"

V_COLUMNS: tuple[str, ...] = tuple(f"V{i}" for i in range(1, 29))
KAGGLE_COLUMNS: tuple[str, ...] = ("Time", *V_COLUMNS, "Amount", "Class")
"""The Kaggle creditcard.csv header (31 columns)."""
EXTENDED_COLUMNS: tuple[str, ...] = ("Id", "Timestamp", "User", *KAGGLE_COLUMNS)
"""The demo's creditcard_extended.csv layout and the DELIMITED source value (34 fields)."""
FEATURE_COLUMNS: tuple[str, ...] = ("Time", *V_COLUMNS, "Amount")
"""The model's 30 input features, in order."""
AVRO_FEATURE_FIELDS: tuple[str, ...] = tuple(c.upper() for c in FEATURE_COLUMNS)
"""The same features as KSQL writes them into Avro (upper-case field names)."""
SCORING_FIELDS: tuple[tuple[str, str], ...] = (
    ("ID", "long"),
    ("TIMESTAMP", "string"),
    ("USER", "string"),
    ("TIME", "int"),
    *[(v, "double") for v in V_COLUMNS],
    ("AMOUNT", "double"),
    ("CLASS", "string"),
)
"""The value fields of `creditcardfraud_scoring_avro` with their Avro types, as `ksql/03` makes
KSQL write them (bench and tests produce records in this layout)."""
