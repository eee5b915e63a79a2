"""The newsroom's sign-in fixtures, for tests that look at an import's page."""

from tests.newsroom.conftest import make_user, signed_in  # noqa: F401 (fixtures)
