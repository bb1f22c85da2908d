"""The demos and the story: what `fastnet demo` and `fastnet train-translator` run.

An application-level package: it may use every model (Network, Translator,
ImageDecoder) and the plots, and nothing below it imports it.

    story        the first chapters: a perceptron, a tiny network, overfitting
    translation  the demo's translator and the train-translator recipe (pair files, splits)
    pictures     the demo's last part: a pixel decoder drawing from the representation
"""
from fastnet.demo.pictures import DOTS_SENTENCES, demo_pictures
from fastnet.demo.story import network_story, perceptron_story
from fastnet.demo.translation import demo_translator, split_by_source, target_name_from_path, train_on_pairs

__all__ = ["perceptron_story", "network_story", "demo_translator", "train_on_pairs", "split_by_source",
           "target_name_from_path", "demo_pictures", "DOTS_SENTENCES"]
