"""Built-in task loaders, registered through the same hook as plugins."""

from metafast.hookspecs import hookimpl


@hookimpl
def metafast_task_loaders(register):
    from metafast.tasks.synthetic import load_sinusoid

    register("sinusoid", load_sinusoid)
