"""Plugins: a user's module that declares regularisers, targets, architectures, evaluations,
recording or dataset sources, loaded only when the config names it.

    plugins: [my_lab.neurobias_ext]      # a module on the Python path, or
    plugins: [my_lab]                    # the name of a `neurobias.plugins` entry point

Loading a plugin imports its module inside :func:`neurobias.registry.declaring`, so each entry it
declares with :func:`neurobias.registry.declare` (or ``register``) is marked as the plugin's.
Nothing is imported because it is installed: an entry point is only a name a package gives its
module, and the module runs only when the config lists that name (a plugin runs code). The
Snakefile loads the plugins before it validates the config (their declarations extend the schema),
and every job loads them again before it runs (:func:`neurobias.jobs.run`), so a plugin's entries
train, evaluate, enter the statistics and figures exactly as built-in ones.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys

from .registry import ALL_REGISTRIES, RegistryError, declaring, load_builtins

ENTRY_POINT_GROUP = "neurobias.plugins"

_loaded: dict[str, str] = {}  # config name -> module name


class PluginError(ValueError):
    """A plugin the config names cannot be loaded, or its declarations are wrong."""


def _module_of(name: str, where: str) -> str:
    """The module a config name means: an entry point of :data:`ENTRY_POINT_GROUP` of that name, else
    the name itself as a module path. A name that is both an entry point of another module and an
    importable module is refused: which of the two would run must not depend on what is installed."""
    import importlib.util
    entries = {e.value.split(":")[0].strip() for e in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
               if e.name == name}
    if not entries:
        return name
    if len(entries) > 1:
        raise PluginError(f"{where}: {name!r} is the {ENTRY_POINT_GROUP} entry point of several modules "
                          f"{sorted(entries)}; name the module instead")
    module = entries.pop()
    try:
        importable = module != name and importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        importable = False
    if importable:
        raise PluginError(f"{where}: {name!r} is both a module and the {ENTRY_POINT_GROUP} entry point of "
                          f"{module!r}; name the module you mean ({name!r} or {module!r})")
    return module


def load_plugins(names, config_key: str = "plugins") -> list[str]:
    """Import the plugins ``names`` (once per process), after the built-in declarations, so that a
    name a plugin takes twice is told apart from a built-in's. Returns the modules loaded. Errors
    (:class:`PluginError`) name the config key and the plugin."""
    load_builtins()
    modules = []
    for i, name in enumerate(names):
        where = f"config field '{config_key}[{i}]'"
        if not isinstance(name, str) or not name:
            raise PluginError(f"{where}: expected a module or entry-point name, got {name!r}")
        if name in _loaded:
            modules.append(_loaded[name])
            continue
        module = _module_of(name, where)
        if module in sys.modules and module not in _loaded.values():
            # imported earlier without declaring (e.g. by a test): its declarations ran unmarked or
            # not at all; importing it again inside `declaring` is the only way to get them
            del sys.modules[module]
        importlib.invalidate_caches()  # a plugin file written since the path's folders were last listed
        try:
            with declaring(module):
                importlib.import_module(module)
        except BaseException as e:
            for registry in ALL_REGISTRIES:  # nothing of a plugin that failed half-way stays declared
                registry.remove_plugin(module)
            sys.modules.pop(module, None)
            if isinstance(e, RegistryError):
                raise PluginError(f"{where}: plugin {name!r}: {e}") from e
            if not isinstance(e, Exception):
                raise
            raise PluginError(f"{where}: plugin {name!r} (module {module!r}) failed to import: "
                              f"{type(e).__name__}: {e}") from e
        _loaded[name] = module
        modules.append(module)
    return modules
