"""A perceptron learns AND and OR but not XOR; two layers learn XOR.

    python examples/perceptron_logic.py
"""
from fastnet.demo import perceptron_story

if __name__ == "__main__":
    results = perceptron_story()
    print()
    print("summary:", ", ".join(f"{k}={v:.3g}" for k, v in results.items()))
