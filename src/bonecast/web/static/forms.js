// bonecast: forms that help (GOV.UK error summary pattern). After a rejected submit the error
// summary at the top of the page takes the focus, so screen readers announce it and keyboard
// users start there; each of its links moves the focus to the field it names.
document.addEventListener("DOMContentLoaded", () => {
  const summary = document.getElementById("error-summary");
  if (!summary) return;
  summary.focus();
  for (const link of summary.querySelectorAll("a[href^='#']")) {
    link.addEventListener("click", (event) => {
      const target = document.getElementById(link.getAttribute("href").slice(1));
      if (!target) return;
      event.preventDefault();
      target.scrollIntoView({ block: "center" });
      const input = target.matches("input, select, textarea") ? target : target.querySelector("input, select, textarea");
      (input || target).focus();
    });
  }
});
