"""What rebuilds a model: a JSON description of its module tree, which every checkpoint records
(``ember.architecture``) so that ``ember.load_model``, ``ember evaluate`` and ``ember quantize``
can make the model again from the file alone.

A description is ``{"class": NAME, "config": {...}, "children": {name: description, ...}}``: the
class's registered name, the arguments the module was made with (``Module.get_config``) and its
sub-modules. ``rebuild`` makes each module from its config, then puts in every child whose class
or config differs from what the constructor made the child the description names -- so a model
whose Linear layers were swapped for quantized ones comes back as it was saved. Containers
(``Sequential``, ``ModuleList``, Keras's ``Sequential``) are made from their rebuilt children
(their class method ``from_children``). A module met again (one layer applied twice,
``Sequential(a, act, a)``) is described once, where it is first met (in the order of
``named_modules``); each later place holds ``{"same_as": "its.path"}``, and ``rebuild`` puts the
same module there.

Only registered classes are made: Ember's layers are registered, a model's own ``Module``
subclass opts in with ``@ember.nn.register``. A file therefore names no code but those classes,
and ``rebuild(..., max_bytes=)`` bounds what the configs it holds may allocate.
"""

from __future__ import annotations

import importlib
import inspect
import json

import numpy as np

from ..factories import allocation_limit
from .module import Module

_REGISTRY: dict = {}  # name -> class
_NAMES: dict = {}  # class -> name
# Registered names whose classes live in a module that is imported on first use.
_PROVIDERS = {"keras.": "ember.keras", "models.GPT": "ember.gpt"}


def register(cls=None, *, name: str | None = None):
    """Class decorator that lets ``rebuild`` (and so ``ember.load_model`` and ``ember evaluate``)
    make the class from a checkpoint's description: ``@ember.nn.register`` or
    ``@ember.nn.register(name="MyNet")``. ``name`` (default: the class's ``__qualname__``) is what
    files record, so keep it stable. The constructor's arguments must be JSON values (numbers,
    strings, booleans, None, lists, dicts) -- or the class defines ``get_config`` returning the
    keyword arguments that make it again. Returns the class."""

    def add(c):
        if not (isinstance(c, type) and issubclass(c, Module)):
            raise TypeError(f"register: {c!r} is not a subclass of ember.nn.Module")
        key = c.__qualname__ if name is None else name
        if not isinstance(key, str) or not key:
            raise TypeError(f"register: name must be a non-empty string, got {key!r}")
        old = _REGISTRY.get(key)
        if old is not None and (old.__module__, old.__qualname__) != (c.__module__, c.__qualname__):
            raise ValueError(f"register: the name {key!r} is taken by {old.__module__}.{old.__qualname__}; "
                             f"give {c.__qualname__} another with register(name=...)")
        _REGISTRY[key] = c
        _NAMES[c] = key
        return c

    return add if cls is None else add(cls)


def _json(value, where):
    """``value`` as JSON holds it (tuples as lists, NumPy scalars as numbers), or TypeError."""
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where}: a dict with keys that are not strings")
        return {k: _json(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{where} is a {type(value).__name__}, which a checkpoint's JSON cannot hold")


def _is_container(cls) -> bool:
    return "from_children" in vars(cls)


def _config(module, where) -> dict:
    config = module.get_config()
    if not isinstance(config, dict):
        raise TypeError(f"{where}: get_config() must return a dict, got {type(config).__name__}")
    return _json(config, f"{where}'s argument")


def describe(module: Module, where: str = "model") -> dict:
    """The JSON-ready description that ``rebuild`` makes ``module`` again from. A TypeError
    names the first sub-module whose class is not registered or whose arguments JSON cannot
    hold, and says how to fix it."""
    return _describe(module, where, "", {})


def _describe(module, where, path, seen) -> dict:
    """``describe`` of ``module`` at ``path`` ("" for the model, then "block.0"); ``seen`` maps
    the modules described so far to their paths."""
    if id(module) in seen:
        return {"same_as": seen[id(module)]}
    seen[id(module)] = path
    name = _NAMES.get(type(module))
    if name is None:
        cls = type(module)
        raise TypeError(f"{where} is a {cls.__module__}.{cls.__qualname__}, which is not registered: decorate the "
                        f"class with @ember.nn.register so that checkpoints can rebuild it")
    try:
        config = _config(module, where)
    except TypeError as exc:
        raise TypeError(f"{exc} (give {type(module).__qualname__} a get_config() that returns JSON values)") from None
    children = {k: _describe(c, f"{where}.{k}", f"{path}.{k}" if path else k, seen)
                for k, c in module._modules.items() if c is not None}
    return {"class": name, "config": config, "children": children}


def _lookup(name, where):
    if not isinstance(name, str):
        raise ValueError(f"{where}: 'class' must be a string, got {name!r}")
    if name not in _REGISTRY:
        for prefix, provider in _PROVIDERS.items():
            if name.startswith(prefix):
                importlib.import_module(provider)
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(f"{where} is a {name!r}, which is not a registered module class: import the code that "
                         f"defines it (decorated with @ember.nn.register) before loading")
    return cls


def _parts(node, where):
    """(class, config, children) of a description node, its structure checked."""
    if not isinstance(node, dict) or "class" not in node or set(node) - {"class", "config", "children"}:
        raise ValueError(f"{where}: a module's description is {{'class': ..., 'config': {{...}}, 'children': "
                         f"{{...}}}}, got {str(node)[:120]}")
    config, children = node.get("config", {}), node.get("children", {})
    if not isinstance(config, dict):
        raise ValueError(f"{where}: 'config' must be a dict, got {type(config).__name__}")
    if not isinstance(children, dict):
        raise ValueError(f"{where}: 'children' must be a dict, got {type(children).__name__}")
    return _lookup(node["class"], where), config, children


def construct(cls, config: dict, where: str = "model"):
    """``cls`` made from ``config`` (its constructor's arguments by name, as ``get_config``
    gives them); an argument it does not take, or one it refuses, is a ValueError naming
    ``where``."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    unknown = sorted(set(config) - {p.name for p in params})
    if unknown:
        raise ValueError(f"{where}: {cls.__qualname__} takes no argument {', '.join(map(repr, unknown))}")
    varargs = next((i for i, p in enumerate(params) if p.kind is p.VAR_POSITIONAL), -1)
    args, kwargs = [], {}
    for i, p in enumerate(params):
        if p.name not in config:
            continue
        value = config[p.name]
        if p.kind is p.VAR_POSITIONAL or p.kind is p.VAR_KEYWORD:
            if not isinstance(value, list if p.kind is p.VAR_POSITIONAL else dict):
                raise ValueError(f"{where}: {cls.__qualname__}'s *{p.name} must be a "
                                 f"{'list' if p.kind is p.VAR_POSITIONAL else 'dict'}, got {value!r}")
            (args.extend if p.kind is p.VAR_POSITIONAL else kwargs.update)(value)
        elif p.kind is p.POSITIONAL_ONLY or i < varargs:
            args.append(value)
        else:
            kwargs[p.name] = value
    try:
        return cls(*args, **kwargs)
    except Exception as exc:  # whatever a constructor raises for arguments it refuses
        call = ", ".join(f"{k}={json.dumps(v)}" for k, v in config.items())
        raise ValueError(f"{where}: {cls.__qualname__}({call[:200]}) cannot be made: {exc}") from None


def _made_before(node, where, built):
    """The module a ``{"same_as": path}`` node names (one rebuilt before it), or None for a
    node that describes a module."""
    if not (isinstance(node, dict) and "same_as" in node):
        return None
    path = node["same_as"]
    if set(node) != {"same_as"} or not isinstance(path, str) or path not in built:
        raise ValueError(f"{where}: {{'same_as': path}} must name a module described before it, got {str(node)[:120]}")
    return built[path]


def _rebuild(node, where, path="", built=None):
    """The module ``node`` describes at ``path``; ``built`` maps the paths of the modules made
    so far to them (where a ``same_as`` node finds its module)."""
    built = {} if built is None else built
    again = _made_before(node, where, built)
    if again is not None:
        return again
    cls, config, children = _parts(node, where)
    if _is_container(cls):
        children = {k: _rebuild(c, f"{where}.{k}", _child(path, k), built) for k, c in children.items()}
        try:
            module = cls.from_children(config, children)
        except Exception as exc:  # whatever the class raises for a config it refuses
            raise ValueError(f"{where}: {cls.__qualname__} cannot be made from {json.dumps(config)[:200]}: {exc}") \
                from None
        built[path] = module
        return module
    module = built[path] = construct(cls, config, where)
    _restore_children(module, children, where, path, built)
    return module


def _child(path, key) -> str:
    return f"{path}.{key}" if path else key


def _restore_children(module, children, where, path, built) -> None:
    """Put in ``module`` each described child that its constructor did not make as described."""
    for key, node in children.items():
        have = module._modules.get(key)
        again = _made_before(node, f"{where}.{key}", built)
        if again is not None:
            if key in module._modules:
                module._modules[key] = again
            else:
                setattr(module, key, again)
            continue
        cls, config, grandchildren = _parts(node, f"{where}.{key}")
        same = False
        if type(have) is cls:
            try:
                same = _config(have, where) == config
            except TypeError:
                pass
        if same:
            built[_child(path, key)] = have
            _restore_children(have, grandchildren, f"{where}.{key}", _child(path, key), built)
        elif key in module._modules:  # in its place: a Sequential runs its children in order
            module._modules[key] = _rebuild(node, f"{where}.{key}", _child(path, key), built)
        else:
            setattr(module, key, _rebuild(node, f"{where}.{key}", _child(path, key), built))
    restored = getattr(module, "_children_restored", None)
    if restored is not None and children:
        restored()


def rebuild(description: dict, *, max_bytes: int | None = None, source: str = "the description") -> Module:
    """The module ``description`` (from ``describe``) makes: a ValueError naming the sub-module
    when the description is malformed, names a class that is not registered, or gives
    arguments its class refuses. With ``max_bytes``, the tensors made while rebuilding may not
    exceed that many bytes in all (the error names ``source``) -- a file's description cannot
    allocate more than the file backs."""
    if max_bytes is None:
        return _rebuild(description, "model")
    with allocation_limit(max_bytes, source):
        return _rebuild(description, "model")


def _register_builtin() -> None:
    from . import layers, transformer

    for module in (layers, transformer):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Module) and value.__module__ == module.__name__ \
                    and not value.__name__.startswith("_"):
                register(value, name=f"nn.{value.__name__}")


_register_builtin()
