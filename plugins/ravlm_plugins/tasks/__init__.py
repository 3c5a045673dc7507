"""The reference tasks: the leaderboard columns of DESIGN.md."""

from ravlm_bench import hookimpl


@hookimpl
def register_tasks(register):
    from ravlm_plugins.tasks.coco_category import CocoCategory
    from ravlm_plugins.tasks.image_text_matching import ImageTextMatching
    from ravlm_plugins.tasks.image_text_retrieval import ImageTextRetrieval
    from ravlm_plugins.tasks.vg_qa import VisualGenomeQA

    register("coco-category", CocoCategory,
             description="image + caption -> category of the largest non-crowd instance")
    register("coco-retrieval", lambda **kw: ImageTextRetrieval("coco-retrieval", "coco", **kw),
             description="image-text Recall@1/5/10 on COCO (Karpathy test split)")
    register("flickr30k-retrieval",
             lambda **kw: ImageTextRetrieval("flickr30k-retrieval", "flickr30k", **kw),
             description="image-text Recall@1/5/10 on Flickr30k (Karpathy test split)")
    register("flickr30k-itm", ImageTextMatching,
             description="does this caption describe this image? (hard negatives)")
    register("vg-qa", VisualGenomeQA,
             description="image + question -> answer over the top-N normalised answers")
