"""An application's setup as a file: parse and validate it, apply it, export it.

The format is documented in docs/app-config.md; examples/demo-shop.fatcontroller.yml is a
full example. One module per job, none of which runs on import:

- schema: what the file may say (its keys, the settings it sets) and the parsed result;
- parse: YAML in, a validated AppConfig out, or a ConfigError listing every problem;
- apply: the database made to say what the file says, or nothing changed;
- export: the file, from what the database holds;
- errors: ConfigError, the one error the others raise.

A plain package, not a Django app: it has no models of its own.
"""
