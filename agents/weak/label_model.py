"""Combine noisy labeling-function votes into training labels: a Dawid-Skene model fitted by EM.

Each labeling function (LF) votes a class or abstains. Majority vote treats every LF as equally
good; the generative label model instead learns, from the agreements and disagreements alone (no
gold labels), how each LF behaves given the true class, and weighs its votes accordingly. This is
the model behind Snorkel's label model, written out because snorkel needs torch here.

The model (Dawid & Skene 1979, with "abstain" as one more outcome of each LF):

    y ~ Categorical(pi)                          class balance (learned, or fixed by the caller)
    lambda_j | y ~ Categorical(theta_j[y, :])    over LF j's possible votes plus abstain

LFs are conditionally independent given y. Making abstention class-conditional matters: a keyword
LF for ``card_arrival`` abstains on most rows, and abstaining says "probably not card_arrival".
EM alternates the posterior over y for every row (E step) and expected-count estimates of pi and
theta (M step). Dirichlet pseudo-counts keep rare (LF, class) cells finite and encode the one
assumption that breaks the label-permutation symmetry: an LF's vote for a class is more likely when
the row really is that class. EM starts from the majority vote, so classes keep their names.

Estimated LF accuracy is P(y = v | LF votes v) under the fitted model: the expected precision of the
LF's non-abstain votes, comparable with the empirical accuracy when some gold labels exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from shadowline.errors import ConfigError

__all__ = ["ABSTAIN", "LabelModel", "majority_vote"]

ABSTAIN = -1


def _check_matrix(L: np.ndarray, cardinality: int) -> np.ndarray:
    L = np.asarray(L)
    if L.ndim != 2:
        raise ConfigError(f"label matrix must be 2-d (rows x LFs), got shape {L.shape}")
    if L.size and (L.min() < ABSTAIN or L.max() >= cardinality):
        raise ConfigError(f"label matrix values must be -1 (abstain) or 0..{cardinality - 1}")
    return L.astype(np.int64, copy=False)


def _argmax_with_ties(P: np.ndarray, tie_break: str, rng: np.random.Generator, tol: float = 1e-9) -> np.ndarray:
    """Row argmax; rows whose best score is shared: ABSTAIN, a random one of the tied, or the first."""
    best = P.max(axis=1, keepdims=True)
    tied = P >= best - tol
    out = P.argmax(axis=1)
    multi = tied.sum(axis=1) > 1
    if tie_break == "abstain":
        out[multi] = ABSTAIN
    elif tie_break == "random":
        for i in np.flatnonzero(multi):
            out[i] = rng.choice(np.flatnonzero(tied[i]))
    return out


def _vote_matrix(L: np.ndarray, cardinality: int) -> sparse.csr_matrix:
    """Sparse one-hot of the votes: row i, column j*k+v is 1 when LF j voted v on row i.

    Most LFs abstain on most rows, so the EM steps are two sparse products over the votes cast
    rather than loops over every (row, LF) cell.
    """
    rows, lfs = np.nonzero(L != ABSTAIN)
    cols = lfs * cardinality + L[rows, lfs]
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(L.shape[0], L.shape[1] * cardinality))


def _vote_counts(L: np.ndarray, cardinality: int) -> np.ndarray:
    """(rows, classes): how many LFs voted each class on each row."""
    counts = np.zeros((L.shape[0], cardinality))
    for j in range(L.shape[1]):
        voted = np.flatnonzero(L[:, j] != ABSTAIN)
        counts[voted, L[voted, j]] += 1.0  # one vote per (row, LF): no repeated index within a column
    return counts


def majority_vote(L: np.ndarray, cardinality: int, *, tie_break: str = "abstain", seed: int = 0) -> np.ndarray:
    """The baseline: most votes wins; no votes -> ABSTAIN; ties per ``tie_break`` (abstain|random|first)."""
    L = _check_matrix(L, cardinality)
    counts = _vote_counts(L, cardinality)
    out = _argmax_with_ties(counts, tie_break, np.random.default_rng(seed))
    out[counts.sum(axis=1) == 0] = ABSTAIN
    return out


@dataclass(frozen=True)
class FitReport:
    iterations: int
    converged: bool
    log_likelihood: float


class LabelModel:
    """Dawid-Skene label model with abstains, fitted by EM on a label matrix (-1 = abstain).

    ``class_balance``: fixed prior over classes (e.g. from a small labelled sample); None learns it.
    ``prior_correct`` / ``prior_other``: Dirichlet pseudo-counts for "votes the true class" and for
    every other outcome of an LF; their ratio is the prior belief that LFs beat chance.
    """

    def __init__(self, cardinality: int, *, class_balance: np.ndarray | None = None, max_iter: int = 200,
                 tol: float = 1e-6, prior_correct: float = 2.0, prior_other: float = 0.01) -> None:
        if cardinality < 2:
            raise ConfigError(f"label model needs at least 2 classes, got {cardinality}")
        self.k = int(cardinality)
        if class_balance is not None:
            cb = np.asarray(class_balance, dtype=float)
            if cb.shape != (self.k,) or (cb <= 0).any():
                raise ConfigError(f"class_balance must be {self.k} positive numbers")
            class_balance = cb / cb.sum()
        self.fixed_balance = class_balance
        self.max_iter, self.tol = int(max_iter), float(tol)
        self.prior_correct, self.prior_other = float(prior_correct), float(prior_other)
        self.balance: np.ndarray | None = None
        self.log_theta: np.ndarray | None = None  # (LFs, k true classes, k votes + abstain)
        self.report: FitReport | None = None
        self.voted: np.ndarray | None = None  # per LF: did it vote at all on the fitting data

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, L: np.ndarray) -> LabelModel:
        L = _check_matrix(L, self.k)
        n, m = L.shape
        if n == 0 or m == 0:
            raise ConfigError("label model needs at least one row and one labeling function")
        self.voted = (L != ABSTAIN).any(axis=0)
        q = self._initial_posterior(L)
        V = _vote_matrix(L, self.k)
        prev = -np.inf
        converged = False
        it = 0
        for it in range(1, self.max_iter + 1):
            self._m_step(V, q)
            q, ll = self._e_step(V)
            if abs(ll - prev) <= self.tol * max(1.0, abs(ll)):
                converged = True
                break
            prev = ll
        self.report = FitReport(it, converged, float(ll))
        return self

    def _initial_posterior(self, L: np.ndarray) -> np.ndarray:
        """Soft majority vote: vote counts plus a little of the prior, row-normalised."""
        counts = _vote_counts(L, self.k)
        base = self.fixed_balance if self.fixed_balance is not None else np.full(self.k, 1.0 / self.k)
        q = counts + 0.1 * base
        return q / q.sum(axis=1, keepdims=True)

    def _m_step(self, V: sparse.csr_matrix, q: np.ndarray) -> None:
        if self.fixed_balance is None:
            counts = q.sum(axis=0) + 1.0  # add-one: no class gets probability 0
            self.balance = counts / counts.sum()
        else:
            self.balance = self.fixed_balance
        m = V.shape[1] // self.k
        # Expected counts per (LF, true class, outcome): votes from one sparse product, abstentions
        # as the remainder of each class's total.
        counts = np.empty((m, self.k, self.k + 1))
        counts[:, :, : self.k] = np.asarray(V.T @ q).reshape(m, self.k, self.k).transpose(0, 2, 1)
        counts[:, :, self.k] = q.sum(axis=0)[None, :] - counts[:, :, : self.k].sum(axis=2)
        prior = np.full((self.k, self.k + 1), self.prior_other)
        prior[np.arange(self.k), np.arange(self.k)] = self.prior_correct
        cell = counts + prior
        # A vote an LF never cast keeps a token share: rows stay normalised without never-seen
        # outcomes soaking up mass.
        never = counts.sum(axis=1) == 0  # (LFs, outcomes)
        cell[np.broadcast_to(never[:, None, :], cell.shape)] = self.prior_other * 1e-3
        self.log_theta = np.log(cell / cell.sum(axis=2, keepdims=True))

    def _joint_log(self, V: sparse.csr_matrix) -> np.ndarray:
        """log pi[y] + sum_j log theta_j[y, L_ij], as "every LF abstained" plus a correction per vote."""
        assert self.log_theta is not None and self.balance is not None
        abstain = self.log_theta[:, :, self.k]  # (LFs, k)
        base = np.log(self.balance) + abstain.sum(axis=0)
        delta = (self.log_theta[:, :, : self.k] - abstain[:, :, None]).transpose(0, 2, 1).reshape(-1, self.k)
        return base[None, :] + np.asarray(V @ delta)

    def _e_step(self, V: sparse.csr_matrix) -> tuple[np.ndarray, float]:
        log_joint = self._joint_log(V)
        top = log_joint.max(axis=1, keepdims=True)
        norm = top + np.log(np.exp(log_joint - top).sum(axis=1, keepdims=True))
        return np.exp(log_joint - norm), float(norm.sum())

    # -- using the fitted model ---------------------------------------------------------------
    def _fitted(self) -> None:
        if self.log_theta is None:
            raise ConfigError("label model is not fitted: call fit(L) first")

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        """Posterior over classes per row; a row with no votes gets the class balance."""
        self._fitted()
        L = _check_matrix(L, self.k)
        if L.shape[1] != self.log_theta.shape[0]:  # type: ignore[union-attr]
            raise ConfigError(f"label matrix has {L.shape[1]} LFs, the model was fitted on {self.log_theta.shape[0]}")  # type: ignore[union-attr]
        q, _ = self._e_step(_vote_matrix(L, self.k))
        return q

    def predict(self, L: np.ndarray, *, tie_break: str = "abstain", seed: int = 0) -> np.ndarray:
        """Most probable class per row; ABSTAIN where no LF voted (nothing was learned about the row)."""
        if tie_break not in ("abstain", "random", "first"):
            raise ConfigError(f"tie_break {tie_break!r}: expected abstain, random or first")
        L = _check_matrix(L, self.k)
        out = _argmax_with_ties(self.predict_proba(L), tie_break, np.random.default_rng(seed))
        out[(L == ABSTAIN).all(axis=1)] = ABSTAIN
        return out

    def lf_accuracies(self) -> np.ndarray:
        """Per LF: P(true class = v | LF votes v), averaged over the votes it cast (NaN if it never voted:
        then the number would be the prior's, not something learned)."""
        self._fitted()
        theta = np.exp(self.log_theta)  # type: ignore[arg-type]
        out = np.full(theta.shape[0], np.nan)
        for j in range(theta.shape[0]):
            # joint P(y, vote=v) = pi[y] theta[y, v]; accuracy for vote v = P(y=v, v) / P(v), weighted by P(v).
            joint = self.balance[:, None] * theta[j, :, : self.k]  # type: ignore[index]
            p_vote = joint.sum(axis=0)
            if p_vote.sum() > 0 and self.voted is not None and self.voted[j]:
                out[j] = float(np.trace(joint) / p_vote.sum())
        return out
