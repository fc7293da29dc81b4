"""The registry on real Redis: seeding happens once, promotions and withdrawals stick, the lock is exclusive."""

import pytest

from agents.base import ComponentSpec
from shadow.registry import PromotionLocked, Registry
from shadowline.errors import ConfigError

V1 = ComponentSpec("classify", "tfidf-logreg", "1")
V2 = ComponentSpec("classify", "tfidf-logreg", "2", {"C": 3.0})


@pytest.fixture
def registry(redis_url, redis_client):
    redis_client.flushdb()
    return Registry(redis_url)


def test_config_seeds_once_and_never_undoes_later_decisions(registry):
    registry.seed({"classify": V1}, {"classify": [V2]})
    epoch = registry.epoch()
    assert registry.active("classify") == V1 and registry.candidates("classify") == [V2]
    registry.activate(V2)
    registry.seed({"classify": V1}, {"classify": [V2]})  # the next process to start
    assert registry.active("classify") == V2 and registry.candidates("classify") == []
    assert registry.history("classify") == [V1] and registry.epoch() > epoch


def test_withdrawn_candidate_stays_withdrawn(registry):
    registry.seed({"classify": V1}, {"classify": [V2]})
    assert registry.remove_candidate("classify", V2.ref)
    registry.seed({"classify": V1}, {"classify": [V2]})
    assert registry.candidates("classify") == []


def test_rollback_and_its_limits(registry):
    registry.seed({"classify": V1})
    with pytest.raises(ConfigError, match="no previous version"):
        registry.rollback("classify")
    registry.activate(V2)
    assert registry.rollback("classify") == (V2, V1) and registry.active("classify") == V1


def test_promotion_lock_is_exclusive_and_released(registry):
    with registry.lock("classify", "alice"):
        with pytest.raises(PromotionLocked, match="classify:alice"):
            with registry.lock("generate", "bob"):
                pass
    with registry.lock("generate", "bob"):
        pass
