"""The rollout engine: a green candidate goes out to the application's placements, phase by
phase, watched, and comes back if it fails. It knows targets only through the interface in
clusters/targets/base.py and never names one.

Three steps, each a short tick run again every FC_ROLLOUT_POLL_SECONDS until its state moves
(ticks.py holds the chain and the lease that keeps two ticks from working at once):

* deploying (forward.py): for the lowest phase not done, every placement in it is started
  and then watched; phases go in order, the placements of a phase together.
* verifying (soak.py): every placement is watched the same way until `verify_until`.
* rolling_back (back.py): every placement touched goes back to the revision recorded before
  it was touched, highest phase first, and is watched the same way.

What a tick learns and does is written on the ServiceRollout rows (placements.py) before the
next call to a target, so a worker that dies anywhere leaves enough for another to carry on
without doing anything twice: a start already under way is adopted, not made again.

Failure is never taken from "steady" alone: a placement is out only when its target says
this rollout's start runs this rollout's revision everywhere it should; a target's failure,
a start not out within the phase timeout or a failing health check fails it, with the
reason in plain words.
"""
