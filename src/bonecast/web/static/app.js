// bonecast: worklist updates and trial progress without a framework (no CDN, no build step).
// A form with data-partial="#target" re-fetches itself on input and swaps the target's rows.
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-partial]")) {
    const target = document.querySelector(form.dataset.partial);
    let timer;
    const refresh = async () => {
      const query = new URLSearchParams(new FormData(form)).toString();
      const response = await fetch(`${form.action}?${query}`, { headers: { "HX-Request": "true" } });
      if (response.ok) {
        target.innerHTML = await response.text();
        history.replaceState(null, "", `${form.action}?${query}`);
      }
    };
    form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
    form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  }
});

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
