import numpy as np
import numpy.typing as npt

def count_rows(data: bytes, /) -> int: ...
def records(
    data: bytes,
    rows: int,
    users: tuple[bytes, ...],
    user_of_row: npt.NDArray[np.uint8],
    first_id: int,
    base_seconds: int,
    max_line_bytes: int,
    times: npt.NDArray[np.float64],
) -> tuple[list[bytes], list[bytes]] | None: ...
