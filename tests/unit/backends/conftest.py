from .backend_fixtures import repo  # noqa: F401 - the fixture, shared by this directory's tests
