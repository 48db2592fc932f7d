// bonecast: trial progress without a framework (no CDN, no build step). Partial page updates
// (the worklist's search, filter and sort) use htmx, shipped in this folder (htmx.min.js,
// htmx.org 2.0.11, Zero-Clause BSD licence).

// A section with data-poll="URL" polls a trial's progress each second and reloads when it ends.
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("[data-poll]")) {
    const poll = async () => {
      const response = await fetch(box.dataset.poll);
      const job = response.ok ? await response.json() : { state: "failed" };
      if (job.state === "done" || job.state === "failed") { location.reload(); return; }
      box.querySelector("progress").value = job.percent;
      box.querySelector("[data-percent]").textContent = job.percent;
      setTimeout(poll, 1000);
    };
    setTimeout(poll, 1000);
  }
});
