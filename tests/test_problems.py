"""Every problem the service answers has its type published in the client's protocol."""

from __future__ import annotations

import session_memory.problems as problems
from session_memory.cli import main as cli_main
from session_memory.main import create_asgi_app
from session_memory.problems import HttpProblem, ProblemError
from session_memory_client.protocol import ProblemType


def import_every_module() -> None:
    """The app and the command line import every module that could declare a problem."""
    assert callable(create_asgi_app)
    assert callable(cli_main)


def _subclasses(cls: type[ProblemError]) -> list[type[ProblemError]]:
    return [cls] + [sub for child in cls.__subclasses__() for sub in _subclasses(child)]


def test_every_service_problem_type_is_in_the_protocol() -> None:
    published = {value for name, value in vars(ProblemType).items() if name.isupper()}
    declared = {cls.type for cls in _subclasses(ProblemError) if cls is not HttpProblem}
    assert declared <= published, declared - published
    assert published <= declared, f"published but never answered: {published - declared}"


def test_every_problem_class_lives_in_the_problems_module() -> None:
    import_every_module()
    for cls in _subclasses(ProblemError):
        assert cls.__module__ == problems.__name__, cls
