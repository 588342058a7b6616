def records(
    data: bytes,
    users: tuple[bytes, ...],
    user_steps: tuple[int, ...],
    first_id: int,
    base_seconds: int,
    max_line_bytes: int,
    /,
) -> tuple[list[bytes], list[bytes], bytes] | None: ...
