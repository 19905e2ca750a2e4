"""Built-in task loaders, registered through the same hook as plugins."""

from metafast.hookspecs import hookimpl


@hookimpl
def metafast_task_loaders(register):
    from metafast.tasks._episodes import load_digits_episodes
    from metafast.tasks.synthetic import LOADERS

    for name, loader in LOADERS.items():
        register(name, loader)
    register("digits", load_digits_episodes)

    from metafast.tasks.classes import LOADERS as CLASS_LOADERS

    for name, loader in CLASS_LOADERS.items():
        register(name, loader)
