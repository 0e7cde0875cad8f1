"""The one error type of the tasks package: bad or missing task data."""


class DataError(ValueError):
    """A problem with input data. The message is one line: ``<file>[:<line>]: <problem>``."""

    def __init__(self, path: object, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")
