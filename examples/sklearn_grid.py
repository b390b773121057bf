"""The classic memento grid: scikit-learn models x datasets (pip install 'memento-grid[sklearn]').

python examples/sklearn_grid.py
"""

from __future__ import annotations

from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.linear_model import Perceptron
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from memento import Memento

DATASETS = {"digits": load_digits, "wine": load_wine, "breast_cancer": load_breast_cancer}


def experiment(context, config):
    X, y = DATASETS[config.dataset](return_X_y=True)
    pipeline = make_pipeline(config.settings["preprocessing"], config.model())
    scores = cross_val_score(pipeline, X, y, cv=config.settings["folds"])
    for fold, score in enumerate(scores):
        context.record({"accuracy": (fold, float(score))})
    return {"accuracy": float(scores.mean()), "std": float(scores.std())}


MATRIX = {
    "parameters": {"model": [SVC, Perceptron], "dataset": list(DATASETS)},
    "settings": {"preprocessing": StandardScaler(), "folds": 5},
    "exclude": [{"model": SVC, "dataset": "breast_cancer"}],
}

if __name__ == "__main__":
    results = Memento(experiment).run(MATRIX)
    for r in results:
        print(f"{r.config}: accuracy {r.inner['accuracy']:.3f} +/- {r.inner['std']:.3f}")
    try:
        print(results.to_dataframe())
    except ImportError as error:
        print(error)
