"""How to get the next page: by page number, by offset, by a cursor token, or by a `next` link.

A paginator turns (request made, response got) into the next request, or None at the end, so the
source's fetch loops stay identical for every vendor. A request with a JSON body (a POST API)
carries its page parameter in the body, as a number; otherwise it goes in the query.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin

from functions.sync_worker.source.config import (
    CursorPagination,
    LinkPagination,
    NoPagination,
    OffsetPagination,
    PageNumberPagination,
    PaginationConfig,
)
from functions.sync_worker.source.http_message import VendorResponse
from functions.sync_worker.source.mapping import compile_path


@dataclass(frozen=True)
class PageRequest:
    url: str
    params: dict[str, str]
    page: int = 0  # page number or offset
    method: str = "GET"
    json_body: Any = None
    form: dict[str, str] | None = None
    headers: dict[str, str] | None = None

    def with_param(self, name: str, value: int | str, page: int | None = None) -> PageRequest:
        """This request with one paging parameter set, where the request carries its parameters."""
        changes: dict[str, Any] = {} if page is None else {"page": page}
        if isinstance(self.json_body, dict):
            changes["json_body"] = {**self.json_body, name: value}
        elif self.form is not None:
            changes["form"] = {**self.form, name: str(value)}
        else:
            changes["params"] = {**self.params, name: str(value)}
        return replace(self, **changes)


class Paginator:
    def __init__(self, cfg: PaginationConfig) -> None:
        self.cfg = cfg
        self._next = (
            compile_path(cfg.next) if isinstance(cfg, (CursorPagination, LinkPagination)) and cfg.next else None
        )
        self._total_pages = (
            compile_path(cfg.total_pages) if isinstance(cfg, PageNumberPagination) and cfg.total_pages else None
        )
        self._total = compile_path(cfg.total) if isinstance(cfg, OffsetPagination) and cfg.total else None

    def first(self, req: PageRequest) -> PageRequest:
        if isinstance(self.cfg, PageNumberPagination):
            return req.with_param(self.cfg.page_param, self.cfg.start, self.cfg.start)
        if isinstance(self.cfg, OffsetPagination):
            return req.with_param(self.cfg.offset_param, self.cfg.start, self.cfg.start)
        return req

    def remaining(self, first: PageRequest, body: Any, items: int) -> list[PageRequest] | None:
        """Every request after the first page, when the first answer says how many there are (page
        numbers with a page count, offsets with a total): those pages can be asked for at once.
        None when the end is only found page by page (no total, a cursor, a link).

        Offsets step by the first page's item count, not the size asked for: a vendor that caps its
        page size below ours must not have stations skipped between our offsets.
        """
        cfg = self.cfg
        if isinstance(cfg, PageNumberPagination) and self._total_pages is not None:
            param, start, total, step = cfg.page_param, cfg.start, self._total_pages(body), 1
        elif isinstance(cfg, OffsetPagination) and self._total is not None:
            param, start, total, step = cfg.offset_param, cfg.start, self._total(body), items
        else:
            return None
        if not isinstance(total, int) or isinstance(total, bool):
            return None  # no usable total in this answer: find the end page by page
        if items == 0:
            return []
        return [first.with_param(param, p, p) for p in range(first.page + step, start + total, step)]

    def next(self, req: PageRequest, body: Any, resp: VendorResponse, items: int, page_size: int) -> PageRequest | None:
        cfg = self.cfg
        if isinstance(cfg, NoPagination):
            return None
        if isinstance(cfg, PageNumberPagination):
            if items == 0:
                return None
            if self._total_pages is not None:
                total = self._total_pages(body)
                if isinstance(total, int) and req.page - cfg.start + 1 >= total:
                    return None
            elif items < page_size:
                return None
            page = req.page + 1
            return req.with_param(cfg.page_param, page, page)
        if isinstance(cfg, OffsetPagination):
            if items == 0:
                return None
            offset = req.page + items
            if self._total is not None:
                total = self._total(body)
                if isinstance(total, int) and offset - cfg.start >= total:
                    return None
            elif items < page_size:
                return None
            return req.with_param(cfg.offset_param, offset, offset)
        if isinstance(cfg, CursorPagination):
            token = self._next(body) if self._next else None
            if not token:
                return None
            if not cfg.keep_params:
                req = replace(req, params={})
            return req.with_param(cfg.param, str(token))
        # Link: the next URL carries every parameter itself.
        link = self._next(body) if self._next else resp.links.get("next", {}).get("url")
        if not link:
            return None
        return PageRequest(urljoin(resp.url, str(link)), {})
