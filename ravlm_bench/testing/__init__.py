"""The conformance kit: pytest-ready checks that a component honours the plugin contract.

Plugin authors call these from their own tests (they are also exported by
:mod:`ravlm_bench.api`)::

    from ravlm_bench.api import check_retriever

    def test_my_retriever_honours_the_contract():
        check_retriever(lambda **kw: MyRetriever(**kw))

Each check raises ``AssertionError`` with a message saying what is wrong. One module per
component kind: encoders, retrievers, datasets (and publishers), tasks, heads.
"""

from ravlm_bench.testing._common import SAMPLE_TEXTS, sample_images
from ravlm_bench.testing.datasets import check_dataset, check_publisher
from ravlm_bench.testing.encoders import check_image_encoder, check_text_encoder
from ravlm_bench.testing.heads import check_fusion_head, check_joint_embedding
from ravlm_bench.testing.retrievers import check_retriever
from ravlm_bench.testing.tasks import check_task

__all__ = [
    "check_dataset",
    "check_fusion_head",
    "check_image_encoder",
    "check_joint_embedding",
    "check_publisher",
    "check_retriever",
    "check_task",
    "check_text_encoder",
    "sample_images",
    "SAMPLE_TEXTS",
]
