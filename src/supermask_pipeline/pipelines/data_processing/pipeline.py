"""data_processing: verified raw files → HDF5 splits."""

from kedro.pipeline import Node, Pipeline

from supermask_pipeline.pipelines.data_processing.nodes import split_raw_images


def create_pipeline(**kwargs) -> Pipeline:
    """One node: raw_images → train_split, val_split, test_split."""
    return Pipeline(
        [
            Node(
                func=split_raw_images,
                inputs=["raw_images", "params:data_processing"],
                outputs=["train_split", "val_split", "test_split"],
                name="split_raw_images",
                tags=["data_processing"],
            )
        ]
    )
