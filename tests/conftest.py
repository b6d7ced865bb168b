"""Shared test settings."""

try:
    from hypothesis import HealthCheck, settings
except ModuleNotFoundError:  # a python without the test extras (the GPU check's device image may be
    settings = None  # one): only tests/test_properties_*.py need hypothesis, and they import it

# Property tests (tests/test_properties_*.py) replay the same examples on every machine: CI cannot
# fail on a draw a developer never saw, and no example database is kept between runs. Example I/O
# (parquet files, tokenization) is slow next to hypothesis' expectations, hence no deadline.
if settings is not None:
    settings.register_profile(
        "reproducible",
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.load_profile("reproducible")
