"""How long something took, in words: the one way Fat Controller says a duration.

Plain Python, no Django. Every page, chat message and build summary that turns seconds into
words calls in_words(), so a deploy reads the same on the dashboard, in the history and in
chat. The rule:

- The two largest units from the first that is not zero, of d, h, min and s: "45 s",
  "12 min 5 s", "3 h 4 min", "1 d 1 h". Days are the largest unit: "400 d 3 h".
- The second is left out when it is zero: "10 min", "2 h", "1 d", and "0 s" for nothing.
- Whatever is smaller than the second unit is dropped, never rounded up, so the words never
  say more time than it took and they only grow as the time does: 3599 s is "59 min 59 s",
  7199 s is "1 h 59 min", and a build of 0.4 s is "0 s".
- A negative duration (two clocks that disagree) reads "0 s"; an infinite one is an error.

A configuration value in the file's own syntax ("90s", "10m") is another idea: see the
application config module.
"""

import math
from datetime import timedelta

# Largest first: (seconds in the unit, its name).
UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


def in_words(duration: float | timedelta) -> str:
    """duration (seconds, or a timedelta) as the rule above says it; never empty."""
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    left = max(math.floor(seconds), 0)
    for index, (size, name) in enumerate(UNITS[:-1]):
        if left >= size:
            big, rest = divmod(left, size)
            small_size, small_name = UNITS[index + 1]
            small = rest // small_size
            return f"{big} {name} {small} {small_name}" if small else f"{big} {name}"
    return f"{left} s"
