"""vg-qa: image + question -> answer, over the top-N normalised training answers."""

from __future__ import annotations

from ravlm_bench.api import SingleLabelEvaluation
from ravlm_plugins.tasks import splits
from ravlm_plugins.tasks.labelled import classification_data, label_space


class VisualGenomeQA(SingleLabelEvaluation):
    name = "vg-qa"
    dataset = "visual_genome"

    def __init__(self, top_answers: int = 1000, min_count: int = 1):
        self.top_answers = int(top_answers)
        self.min_count = int(min_count)

    def build(self, dataset, seed: int):
        images = splits.split_frames(dataset, "images")
        questions = splits.load(dataset, "questions", dataset.splits())
        frames = {}
        for role, frame in images.items():
            qa = questions[questions["image_id"].isin(frame["image_id"])]
            qa = qa.merge(frame[["image_id", "image_path"]], on="image_id")
            qa = qa.sort_values("qa_id")
            frames[role] = qa.rename(columns={"question": "text", "answer_norm": "label"})[
                ["image_id", "image_path", "text", "label"]]
        classes = label_space(frames["train"]["label"], top_n=self.top_answers,
                              min_count=self.min_count, task=self.name, label="answer",
                              items="training questions")
        return classification_data(self.name, frames, classes)
