// fluxedge web: sortable tables and a page that reloads itself (shipped with the package, no CDN)
"use strict";
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("th[data-key]").forEach((th, col) => {
    th.addEventListener("click", () => {
      const asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach((h) => h.classList.remove("asc", "desc"));
      th.classList.add(asc ? "asc" : "desc");
      const body = table.tBodies[0];
      const value = (row) => {
        const cell = row.cells[col];
        const v = cell ? (cell.dataset.v ?? cell.textContent.trim()) : "";
        return th.dataset.key === "num" ? (v === "" ? -Infinity : Number(v)) : v.toLowerCase();
      };
      const rows = Array.from(body.rows).filter((r) => r.cells.length > 1);
      rows.sort((a, b) => (value(a) > value(b) ? 1 : value(a) < value(b) ? -1 : 0) * (asc ? 1 : -1));
      rows.forEach((r) => body.appendChild(r));
    });
  });
});
const updated = document.getElementById("updated");
if (updated) {
  // reload the fleet page: the whole page, so sorting state resets but nothing else is needed
  setTimeout(() => window.location.reload(), Number(updated.dataset.refreshS) * 1000);
}
