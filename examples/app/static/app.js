// flaskhost example app: a tiny bit of JavaScript to show static files are served.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const clock = document.getElementById("clock");
  if (clock) {
    const tick = () => { clock.textContent = new Date().toLocaleTimeString(); };
    tick();
    setInterval(tick, 1000);
  }
});
