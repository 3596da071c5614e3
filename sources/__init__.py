"""Sources: each reads one dataset format into `uvd.records.Item`s. Registered by name here."""

BUILTIN: dict[str, str] = {
    "image_folder": "sources.image_folder:ImageFolderSource",
    "laion": "sources.laion:LaionSource", "img2dataset": "sources.img2dataset_output:Img2datasetSource",
    "video": "sources.video:VideoSource", "annotated_video": "sources.annotated_video:AnnotatedVideoSource",
    "objaverse": "sources.objaverse:ObjaverseSource",
    "coco": "sources.coco:CocoSource", "mpii": "sources.mpii:MpiiSource", "pose_video": "sources.pose_video:PoseVideoSource",
    "co3d": "sources.co3d:Co3dSource",
    "segmentation": "sources.segmentation:SegmentationSource", "depth": "sources.depth:DepthSource", "paired": "sources.paired:PairedSource",
}
