"""The error of a file that cannot be used: every problem found at once, each by its path."""


class ConfigError(Exception):
    """The file cannot be used; errors has every problem found, each naming its path."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))
