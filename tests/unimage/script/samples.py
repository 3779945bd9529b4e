"""Names of the six published UniMAGE scripts in ``fixtures/unimage_scripts``."""

FIXTURE_NAMES = (
    "unimage_result_1.txt",
    "unimage_result_3.txt",
    "unimage_result_5.txt",
    "unimage_result_9.txt",
    "unimage_result_12.txt",
    "unimage_result_16.txt",
)
