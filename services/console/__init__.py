"""The analyst's console (`fraudstream ui`): live alerts with explanations, feedback, the alert
budget, the pipeline's health, feature drift, the model registry and a KSQL editor, in one web
page served by the project (plain HTML/CSS/JS, no build step, no CDN).

Modules: `config` (what it reads and where), `alerts` (the read-committed feed behind the live
table), `health` (throughput and lag per stage from Kafka offsets and the KSQL REST API),
`drift` (PSI of the live stream against the training data), `models` (the registry's versions),
`ksql_proxy` (the editor, through ksqlDB's REST API), `backend` (the feedback and budget calls),
`app` (routes), `cli` (`fraudstream ui`), `static/` (the page).
"""
