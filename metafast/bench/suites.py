"""Benchmark suites: lists of cases (task family, shots, learner or baseline) with fixed seeds.

A suite is data: ``Suite(name, cases)``.  Built-in suites are made by the factories in
``BUILTIN_SUITES`` (each takes ``quick`` for a CI-sized run); plugins add suites through the
``metafast_benchmark_suites(register)`` hook (``register(name, suite_factory)``).  ``get_suite`` and
``available_suites`` see both.

The learners compared are data too (``default_learners()``: a list of ``LearnerSpec``), built
from names looked up on ``metafast`` at run time, so a learner that is not installed is a
reported skip, not a crash.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from metafast.bench._skip import Unavailable
from metafast.bench.baselines import Oracle, PerTaskCentroid, PerTaskRidge, PooledRidge

logger = logging.getLogger(__name__)

REGRESSION_FAMILIES = ("sinusoid", "harmonic", "multimodal")
REGRESSION_SHOTS = (5, 10, 20)
DEFAULT_BASIS = ("rbf", {"n_basis": 40})
# harmonic tasks (Lacoste et al. 2018) mix frequencies w ~ U[5, 7] and 2w: 40 RBFs on their
# x range cannot resolve them, a Fourier basis on the two bands (angular frequencies
# 4.6-7.4 and 9.2-14.8, 15 each, cosine and sine) spans them.
HARMONIC_FREQUENCIES = tuple(float(f) for f in (*np.linspace(4.6, 7.4, 15), *np.linspace(9.2, 14.8, 15)))
FAMILY_BASES = {
    "harmonic": ("fourier", {"n_basis": 60, "frequencies": HARMONIC_FREQUENCIES, "include_constant": False}),
}


# ---------------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class LearnerSpec:
    """A learner or baseline in a suite: a label and ``factory(basis, case) -> unfitted estimator``.

    ``kind`` is "learner", "baseline" or "oracle" (reports group by it).  A factory raises
    ``Unavailable`` when the estimator is not installed.
    """

    label: str
    factory: Callable[[Any, Case], Any]
    kind: str = "learner"


@dataclass(frozen=True)
class Case:
    """One row of a benchmark: fit ``learner`` on ``n_train`` tasks of ``family`` with ``shots``
    support points each, evaluate on ``n_test`` new tasks (seeds fixed: train ``seed``, test
    ``seed + 1``).  ``task_params`` go to the loader, plus ``split_params["train"]`` or
    ``["test"]`` for one split (e.g. held-out classes); ``basis`` is (family name, parameters)."""

    family: str
    shots: int
    learner: LearnerSpec
    n_train: int = 2000
    n_test: int = 600
    n_query: int = 20
    seed: int = 0
    task_params: Mapping[str, Any] = field(default_factory=dict)
    split_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    basis: tuple[str, Mapping[str, Any]] = DEFAULT_BASIS
    problem: str = "regression"
    loader: Callable[..., Any] | None = None  # loads the tasks instead of mf.tasks.load(family)

    def loader_params(self, split: str) -> dict:
        """Keyword arguments of ``mf.tasks.load(family, ...)`` for the "train" or "test" split."""
        n_tasks = self.n_train if split == "train" else self.n_test
        seed = self.seed if split == "train" else self.seed + 1
        if self.problem == "classification":  # episodes: shots and query points are per class
            shape = {"k_shot": self.shots, "n_query": self.n_query}
        else:
            shape = {"n_support": self.shots, "n_query": self.n_query}
        return {
            "n_tasks": n_tasks,
            "seed": seed,
            **shape,
            **dict(self.task_params),
            **dict(self.split_params.get(split, {})),
        }


@dataclass
class Suite:
    """A named list of cases; ``description`` is one line for listings."""

    name: str
    cases: list[Case]
    description: str = ""

    def __len__(self) -> int:
        return len(self.cases)


# ---------------------------------------------------------------------------------- learner lists
def metafast_learner(class_name: str, **params: Any) -> Callable[[Any, Case], Any]:
    """A factory for ``metafast.<class_name>(basis=basis, **params)``, looked up when called.

    Raises ``Unavailable`` if the class is not in this install or lacks one of ``params``;
    passes ``random_state=case.seed`` and ``verbose=0`` (the harness shows its own progress) when
    the class takes them and ``params`` does not set them.
    """

    def factory(basis: Any, case: Case) -> Any:
        import metafast

        cls = getattr(metafast, class_name, None)
        if cls is None:
            import metafast.learners as learners

            cls = getattr(learners, class_name, None)
        if cls is None:
            raise Unavailable(f"metafast.{class_name} is not available in this install")
        accepted = inspect.signature(cls).parameters
        missing = sorted(set(params) - set(accepted))
        if missing:
            raise Unavailable(f"metafast.{class_name} has no parameter(s) {', '.join(missing)} in this install")
        kwargs = dict(params)
        if "basis" in accepted:
            kwargs["basis"] = basis
        if "random_state" in accepted:
            kwargs.setdefault("random_state", case.seed)
        if "verbose" in accepted:
            kwargs.setdefault("verbose", 0)
        return cls(**kwargs)

    factory.__qualname__ = f"metafast_learner({class_name!r})"
    return factory


def default_learners() -> list[LearnerSpec]:
    """The meta-learners of the regression tables (edit this list to compare others)."""
    return [
        LearnerSpec("MetaRidge", metafast_learner("MetaRidge")),
        LearnerSpec("MetaBayes", metafast_learner("MetaBayes")),
        LearnerSpec("MetaBayes (learned basis)", metafast_learner("MetaBayes", learn_basis=True)),
        LearnerSpec("MetaBayes (mixture of 3)", metafast_learner("MetaBayes", n_components=3)),
    ]


def default_baselines(oracle: bool = True) -> list[LearnerSpec]:
    """Per-task ridge (penalty tuned on the training tasks) and pooled ridge on the same basis,
    and the noise-free oracle."""
    specs = [
        LearnerSpec("per-task ridge", lambda basis, case: PerTaskRidge(basis=basis, alpha="tuned"), "baseline"),
        LearnerSpec("pooled ridge", lambda basis, case: PooledRidge(basis=basis), "baseline"),
    ]
    if oracle:
        specs.append(LearnerSpec("oracle", lambda basis, case: Oracle(family=case.family), "oracle"))
    return specs


def grid(families: Sequence[str], shots: Sequence[int], learners: Sequence[LearnerSpec], **case_params) -> list[Case]:
    """Every (family, shots, learner) combination as a Case, in that order."""
    return [Case(f, int(k), spec, **case_params) for f in families for k in shots for spec in learners]


# ---------------------------------------------------------------------------------- built-in suites
def regression_suite(
    quick: bool = False,
    learners: Sequence[LearnerSpec] | None = None,
    families: Sequence[str] = REGRESSION_FAMILIES,
    seed: int = 0,
    bases: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
) -> Suite:
    """Few-shot regression: query MSE (95% CI over test tasks) and fit seconds for every
    learner and baseline on sinusoid, harmonic and multimodal at K = 5, 10, 20.

    ``bases`` maps a family to the (basis name, parameters) its cases use (default:
    ``FAMILY_BASES``, else 40 RBFs, ``DEFAULT_BASIS``)."""
    specs = list(default_learners() if learners is None else learners) + default_baselines()
    shots, sizes = (
        ((5, 10), dict(n_train=300, n_test=100)) if quick else (REGRESSION_SHOTS, dict(n_train=2000, n_test=600))
    )
    bases = {**FAMILY_BASES, **dict(bases or {})}
    cases = [
        case
        for family in families
        for case in grid([family], shots, specs, seed=seed, basis=bases.get(family, DEFAULT_BASIS), **sizes)
    ]
    return Suite("regression", cases, "few-shot regression quality: MSE against shots, learners vs baselines")


def speed_suite(quick: bool = False, learners: Sequence[LearnerSpec] | None = None, seed: int = 0) -> Suite:
    """Meta-training time against the number of training tasks (sinusoid, K = 10)."""
    specs = list(default_learners() if learners is None else learners) + default_baselines(oracle=False)
    sizes = (250, 500, 1000) if quick else (1000, 2000, 4000, 8000, 16000)
    cases = [Case("sinusoid", 10, spec, n_train=n, n_test=100, seed=seed) for n in sizes for spec in specs]
    return Suite("speed", cases, "fit time against the number of training tasks")


CLASSIFICATION_SHOTS = (1, 5, 10)
CLASSIFICATION_HEADS = ("logistic", "ridge", "prototype")
# family -> (loader parameters, per-split parameters, basis): digits 5-way with meta-test digits 5-9
# never seen in meta-training; the shared-label ``logistic`` family (shots x 3 classes points per
# task); 20-way ``class-mixtures`` episodes
CLASSIFICATION_FAMILIES = {
    "digits": (
        {"n_way": 5, "train_classes": (0, 1, 2, 3, 4)},
        {"train": {"split": "train"}, "test": {"split": "test"}},
        ("polynomial", {"n_basis": 65}),
    ),
    "logistic": ({}, {}, ("polynomial", {"n_basis": 3})),
    "class-mixtures": (
        {"n_way": 20},
        {"train": {"split": "train", "n_query": 1}, "test": {"split": "test"}},
        ("rbf", {"n_basis": 64, "centers": "kmeans", "random_state": 0}),
    ),
}
# the logistic head's Newton costs O(C n^3) per task (dual form): 20-way training episodes keep one
# query point per class, and 10 shots (200 support rows an episode) are left out
FAMILY_SHOTS = {"class-mixtures": (1, 5)}


def classification_baselines() -> list[LearnerSpec]:
    """Per-episode LogisticRegression and nearest class mean on the raw features, the pooled
    classifier (shared labels only: a reported skip on episodes) and the oracle where known."""
    from metafast.bench.baselines import OracleClassifier, PerEpisodeLogistic, PooledClassifier

    return [
        LearnerSpec("per-episode LogisticRegression", lambda basis, case: PerEpisodeLogistic(), "baseline"),
        LearnerSpec("nearest class mean", lambda basis, case: PerTaskCentroid(), "baseline"),
        LearnerSpec("pooled classifier", lambda basis, case: PooledClassifier(), "baseline"),
        LearnerSpec("oracle", lambda basis, case: OracleClassifier(family=case.family), "oracle"),
    ]


def classification_suite(
    quick: bool = False,
    learners: Sequence[LearnerSpec] | None = None,
    seed: int = 0,
    families: Sequence[str] = ("digits", "logistic", "class-mixtures"),
) -> Suite:
    """Few-shot classification: accuracy, log loss and ECE of every MetaClassifier head against the
    baselines at 1, 5 and 10 shots on ``digits`` (5-way, meta-test digits 5-9 held out), the
    shared-label ``logistic`` family (with its oracle) and 20-way ``class-mixtures`` episodes."""
    if learners is None:
        learners = [
            LearnerSpec(f"MetaClassifier ({h})", metafast_learner("MetaClassifier", head=h, max_iter=20))
            for h in CLASSIFICATION_HEADS
        ]
    specs = list(learners) + classification_baselines()
    shots, sizes = (
        ((1, 5), dict(n_train=100, n_test=60)) if quick else (CLASSIFICATION_SHOTS, dict(n_train=500, n_test=300))
    )
    cases = []
    for family in families:
        task_params, split_params, basis = CLASSIFICATION_FAMILIES[family]
        n_query = 5 if family == "class-mixtures" else 15
        family_shots = [k for k in shots if k in FAMILY_SHOTS.get(family, shots)]
        cases += grid(
            (family,),
            family_shots,
            specs,
            n_query=n_query,
            seed=seed,
            task_params=task_params,
            split_params=split_params,
            basis=basis,
            problem="classification",
            **sizes,
        )
    return Suite("classification", cases, "few-shot classification: accuracy, log loss and ECE, heads vs baselines")


def demo_suite(quick: bool = False, seed: int = 0) -> Suite:
    """What ``metafast demo`` runs: MetaBayes and MetaRidge against the baselines on sinusoid.

    sinusoid is noise-free, so EM keeps gaining evidence as the noise variance shrinks long after
    the predictions stop changing; the demo stops at 1e-4 nats per task instead of the default
    1e-5 (same MSE to two digits, no ConvergenceWarning in the main job's output)."""
    specs = [
        LearnerSpec("MetaBayes", metafast_learner("MetaBayes", tol=1e-4)),
        LearnerSpec("MetaRidge", metafast_learner("MetaRidge")),
    ] + default_baselines()
    n_train, n_test = (300, 100) if quick else (2000, 600)
    cases = grid(("sinusoid",), (5, 10), specs, n_train=n_train, n_test=n_test, seed=seed)
    return Suite("demo", cases, "MetaBayes and MetaRidge against the baselines on sinusoid")


GRADIENT_FAMILIES = ("sinusoid", "harmonic", "multimodal", "friedman")
GRADIENT_METHODS = ("maml", "fomaml", "metasgd", "reptile", "imaml")
DEFAULT_METHODS = ("maml", "metasgd")  # MetaGrad as it comes: its own learned network basis
LEARNED_BASIS_METHODS = ("maml", "fomaml", "imaml")  # on the family's basis, learn_basis=True
# friedman has 5 inputs: a grid-like RBF basis does not cover them, 200 random Fourier features do
GRADIENT_BASES = {**FAMILY_BASES, "friedman": ("rff", {"n_basis": 200, "random_state": 0})}
GRADIENT_SIZES = {"sinusoid": 4000}  # issue 25's sinusoid: 4,000 training tasks


def _metagrad_default(**params: Any) -> Callable[[Any, Case], Any]:
    """MetaGrad with its default basis (the case's basis is not used)."""
    inner = metafast_learner("MetaGrad", **params)
    return lambda basis, case: inner(None, case)


def gradient_learners(quick: bool = False) -> list[LearnerSpec]:
    """MetaGrad with defaults (nothing set but the method), MetaGrad learning the family's basis,
    and MetaBayes and MetaRidge on that basis.  ``quick`` caps MetaGrad at 10 s of meta-training."""
    budget = {"max_time": 10.0} if quick else {}
    specs = [LearnerSpec(f"MetaGrad ({m})", _metagrad_default(method=m, **budget)) for m in DEFAULT_METHODS]
    specs += [
        LearnerSpec(
            f"MetaGrad ({m}, learned family basis)", metafast_learner("MetaGrad", method=m, learn_basis=True, **budget)
        )
        for m in LEARNED_BASIS_METHODS
    ]
    return specs + [
        LearnerSpec("MetaBayes", metafast_learner("MetaBayes")),
        LearnerSpec("MetaRidge", metafast_learner("MetaRidge")),
    ]


def gradient_suite(quick: bool = False, learners: Sequence[LearnerSpec] | None = None, seed: int = 0) -> Suite:
    """MetaGrad next to MetaBayes and MetaRidge on sinusoid, harmonic, multimodal and friedman at
    K = 5, 10, 20 (``gradient_learners``): query MSE (95% CI), fit seconds, evaluation seconds
    (adapting every test task) and MetaGrad's learning curves (training and validation loss)."""
    learners = gradient_learners(quick) if learners is None else learners
    shots = (5, 10) if quick else REGRESSION_SHOTS
    cases = [
        case
        for family in GRADIENT_FAMILIES
        for case in grid(
            [family],
            shots,
            learners,
            seed=seed,
            basis=GRADIENT_BASES.get(family, DEFAULT_BASIS),
            n_train=300 if quick else GRADIENT_SIZES.get(family, 2000),
            n_test=100 if quick else 600,
        )
    ]
    return Suite(
        "gradient", cases, "MetaGrad (defaults, and learning the family's basis) next to MetaBayes and MetaRidge"
    )


def selection_suite(quick: bool = False, seed: int = 0) -> Suite:
    """Choosing the basis on harmonic tasks with no hand-set bands: BasisSelector (group lasso,
    SOMP) on a 200-column Fourier dictionary over 0.5-20, then MetaBayes with 6 components on
    the selected basis; against MetaBayes(6) on the whole dictionary, on the hand-set two-band
    basis of the regression table, and one-Gaussian MetaBayes on 60 plain harmonics."""
    from metafast.bench.selection import WIDE_FOURIER, SelectThenFit

    def select_then_bayes(method: str) -> Callable[[Any, Case], Any]:
        def factory(basis: Any, case: Case) -> Any:
            import metafast

            selector = metafast.BasisSelector(method=method)
            return SelectThenFit(selector, metafast.MetaBayes(n_components=6, random_state=case.seed), basis=basis)

        return factory

    shots, sizes = (
        ((5, 10), dict(n_train=300, n_test=100)) if quick else (REGRESSION_SHOTS, dict(n_train=2000, n_test=600))
    )
    wide = [
        LearnerSpec("group-lasso + MetaBayes(6)", select_then_bayes("group-lasso")),
        LearnerSpec("somp + MetaBayes(6)", select_then_bayes("somp")),
        LearnerSpec("MetaBayes(6), whole dictionary", metafast_learner("MetaBayes", n_components=6)),
    ]
    hand = [LearnerSpec("MetaBayes(6), hand-set bands", metafast_learner("MetaBayes", n_components=6), "baseline")]
    plain = [LearnerSpec("MetaBayes, 60 plain harmonics", metafast_learner("MetaBayes"), "baseline")]
    cases = (
        grid(("harmonic",), shots, wide, seed=seed, basis=WIDE_FOURIER, **sizes)
        + grid(("harmonic",), shots, hand, seed=seed, basis=FAMILY_BASES["harmonic"], **sizes)
        + grid(("harmonic",), shots, plain, seed=seed, basis=("fourier", {"n_basis": 60}), **sizes)
    )
    return Suite("selection", cases, "choosing the basis: selected Fourier frequencies vs hand-set bands")


# ---------------------------------------------------------------------------------- real tables
# MetaClassifier() against the first baselines on real tables (``real_tables``): episodic 5-way
# episodes with disjoint meta-train/meta-test classes, and shared labels with one task per group.
EPISODIC_SHOTS = (1, 5)
SHARED_SHOTS = (5, 10, 20)


def table_baselines(kind: str) -> list[LearnerSpec]:
    """The baselines of one kind of table (see the module docstring)."""
    from metafast.bench.table_baselines import (
        LdaCentroid,
        PooledLogistic,
        StandardisedCentroid,
        TaskLogistic,
    )

    specs = [LearnerSpec("per-task logistic", lambda b, c: TaskLogistic(), "baseline")]
    if kind == "episodic":
        specs += [
            LearnerSpec("nearest mean (standardised)", lambda b, c: StandardisedCentroid(), "baseline"),
            LearnerSpec("LDA + nearest mean", lambda b, c: LdaCentroid(), "baseline"),
        ]
    else:
        specs.append(LearnerSpec("pooled logistic", lambda b, c: PooledLogistic(), "baseline"))
    return specs


def classifier(**params) -> Callable[[Any, Case], Any]:
    """A factory of ``MetaClassifier(**params)``: the case's basis is ignored, so the learner's
    own default (or ``params["basis"]``) is what is measured."""
    learner = metafast_learner("MetaClassifier", **params)
    return lambda basis, case: learner(params.get("basis"), case)


def default_table_learners() -> list[LearnerSpec]:
    """MetaClassifier as it comes (the row the issue's targets are about)."""
    return [LearnerSpec("MetaClassifier()", classifier())]


def real_classification_suite(
    quick: bool = False,
    seed: int = 0,
    learners: Sequence[LearnerSpec] | None = None,
    tables: Sequence[str] | None = None,
) -> Suite:
    """Every (table, shots, learner or baseline) case; ``quick``: fewer tasks and shots."""
    from metafast.bench.real_tables import TABLES, loader_for

    learners = list(default_table_learners() if learners is None else learners)
    names = list(TABLES) if tables is None else list(tables)
    sizes = {"n_train": 100, "n_test": 60} if quick else {"n_train": 600, "n_test": 300}
    cases = []
    for name in names:
        kind = TABLES[name].kind
        shots = EPISODIC_SHOTS if kind == "episodic" else SHARED_SHOTS
        if quick:
            shots = shots[:1]
        task_params = {"n_way": 5} if kind == "episodic" else {}
        for k in shots:
            for spec in learners + table_baselines(kind):
                cases.append(
                    Case(
                        name,
                        k,
                        spec,
                        n_query=15,
                        seed=seed,
                        task_params=task_params,
                        problem="classification",
                        loader=loader_for(name),
                        basis=("linear", {}),
                        **sizes,
                    )
                )
    return Suite(
        "real-classification",
        cases,
        "MetaClassifier defaults vs first baselines on real tables (episodic and shared labels)",
    )


BUILTIN_SUITES: dict[str, Callable[..., Suite]] = {
    "regression": regression_suite,
    "classification": classification_suite,
    "speed": speed_suite,
    "demo": demo_suite,
    "gradient": gradient_suite,
    "selection": selection_suite,
    "real-classification": real_classification_suite,
}


# ---------------------------------------------------------------------------------- plugin suites
def _plugin_suite_factories() -> dict[str, Callable[..., Suite]]:
    """Suites registered by plugins through the ``metafast_benchmark_suites`` hook."""
    from metafast import plugins

    reg = plugins.suite_registry()
    return {name: reg.get(name) for name in reg.names()}


def suite_factories() -> dict[str, Callable[..., Suite]]:
    """Every suite factory by name: built-in first, then plugin suites (built-ins win clashes)."""
    try:
        extra = _plugin_suite_factories()
    except Exception as exc:  # a broken plugin never breaks the built-in suites
        logger.warning("could not load plugin benchmark suites: %s", exc)
        extra = {}
    return {**extra, **BUILTIN_SUITES}


def available_suites() -> list[str]:
    """Sorted names of every benchmark suite (built-in and plugins)."""
    return sorted(suite_factories())


def get_suite(name: str, quick: bool = False, **options: Any) -> Suite:
    """The suite ``name`` built by its factory; unknown names raise KeyError with suggestions."""
    factories = suite_factories()
    if name not in factories:
        raise KeyError(unknown_name_message("benchmark suite", name, sorted(factories)))
    factory = factories[name]
    try:  # pass only the options a (plugin) factory accepts, e.g. seed
        params = inspect.signature(factory).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            options = {k: v for k, v in options.items() if k in params}
    except (TypeError, ValueError):
        pass
    suite = factory(quick=quick, **options)
    if not isinstance(suite, Suite):
        raise TypeError(f"suite factory {name!r} returned {type(suite).__name__}, not a metafast.bench.Suite")
    return suite if suite.name == name else replace(suite, name=name)


def unknown_name_message(kind: str, name: str, choices: Sequence[str]) -> str:
    """'unknown <kind> <name>. Did you mean ...? Valid choices: ...' (difflib suggestions)."""
    close = difflib.get_close_matches(str(name), list(choices), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Valid choices: {', '.join(choices) or '(none)'}"
