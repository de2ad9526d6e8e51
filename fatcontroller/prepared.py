"""A query's SQL made once and run again with other values.

The live polls ask one query fifty times a second (deploys/live.py), and building and
compiling its queryset (subqueries, Greatest, Coalesce) costs several times running it. A
Prepared query builds its queryset once per database with stand-in values for its
arguments, finds the stand-ins among the compiled parameters, and from then on runs the same
SQL with the arguments put in their places, converting the rows as the ORM would (SQLite's
datetimes, for one).

The stand-ins are integers no row has (negative, far from any value a query holds); the
query is built twice with different stand-ins, and must compile to the same SQL with them in
the same places, or Prepared refuses it: a query whose shape depends on its arguments (a
Python branch on a value) cannot be prepared this way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.db import connections, router
from django.db.models import QuerySet

_STAND_INS = (-(10**15) - 17, -(10**15) - 4_099)  # two sets of them, to compare


class NotPreparable(ValueError):
    """The query's SQL or its other parameters change with its arguments."""


class Prepared:
    """`Prepared(build, "pk", "user_id")`: build(pk=..., user_id=...) returns the queryset
    (integers only); `.rows(pk=3, user_id=7)` runs it and returns its rows."""

    def __init__(self, build: Callable[..., QuerySet], *arguments: str):
        self._build = build
        self._arguments = arguments
        self._made: dict[str, _Compiled] = {}
        self._lock = threading.Lock()
        self._model = None  # the queryset's, read at the first run

    def rows(self, **values: int) -> list[tuple]:
        if set(values) != set(self._arguments):
            raise TypeError(f"arguments {sorted(values)}, expected {sorted(self._arguments)}")
        if self._model is None:
            self._model = self._build(**dict.fromkeys(self._arguments, _STAND_INS[0])).model
        alias = router.db_for_read(self._model)
        made = self._made.get(alias) or self._make(alias)
        params = list(made.params)
        for name, places in made.places.items():
            for place in places:
                params[place] = values[name]
        with connections[alias].cursor() as cursor:
            cursor.execute(made.sql, params)
            fetched = [tuple(row) for row in cursor.fetchall()]
        return [tuple(row) for row in made.compiler.results_iter(results=[fetched])]

    def _make(self, alias: str) -> _Compiled:
        with self._lock:
            if alias in self._made:
                return self._made[alias]
            first, second = (self._compile(alias, base) for base in _STAND_INS)
            if first.sql != second.sql or first.others() != second.others():
                raise NotPreparable(f"{self._build.__qualname__}: its SQL moves with its values")
            if first.places != second.places:
                raise NotPreparable(f"{self._build.__qualname__}: its values move in its SQL")
            self._made[alias] = first
            return first

    def _compile(self, alias: str, base: int) -> _Compiled:
        stand_ins = {name: base - n for n, name in enumerate(self._arguments)}
        queryset = self._build(**stand_ins)
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        places = {
            name: tuple(n for n, param in enumerate(params) if param == value)
            for name, value in stand_ins.items()
        }
        missing = [name for name, found in places.items() if not found]
        if missing:
            raise NotPreparable(f"{self._build.__qualname__}: {missing} not among its params")
        return _Compiled(sql, tuple(params), places, compiler)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    places: dict[str, tuple[int, ...]]  # each argument's positions in params
    compiler: object

    def others(self) -> Sequence:
        """The parameters that are not stand-ins."""
        taken = {place for places in self.places.values() for place in places}
        return [param for n, param in enumerate(self.params) if n not in taken]
