"""The one compiled part of fraudstream: the replay's fast path for Kaggle-layout blocks.

Everything else is in pyproject.toml. `optional=True`: without a C compiler (a slim Docker
image) the install goes on and `produce` runs its numpy path, which gives the same records.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "services.producer._kaggle_records",
            ["services/producer/_kaggle_records.c"],
            optional=True,
        )
    ]
)
