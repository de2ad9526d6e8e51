from django.apps import AppConfig


class DeploysConfig(AppConfig):
    name = "deploys"
    verbose_name = "Deploys"

    def ready(self) -> None:
        """Who hears of what, registered once the models are loaded.

        After a committed state change: chat first (a deploy's end is told before the next
        deploy's start), then the slot is handed on if the state is final, then the new
        state's step is sent. When a build attempt ends, the pipeline moves the deploy on.
        """
        from builds import outcomes

        from . import dispatch, notify, pipeline, slot, statemachine

        statemachine.listen(notify.deploy_moved)
        statemachine.listen(slot.hand_on_if_final)
        statemachine.listen(dispatch.step_moved_on)
        outcomes.listen(pipeline.build_finished)
