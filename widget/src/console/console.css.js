// The console's stylesheet (built into dist/console.css with the chat view's rules).
import { CSS } from '../ui/chat.js';

export default `
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;background:#eef0f3;height:100vh;display:flex;flex-direction:column}
.top{display:flex;justify-content:space-between;align-items:center;padding:10px 16px;background:#111827;color:#fff}
.top h1{font-size:16px;margin:0}
.error{margin:0;padding:6px 16px;background:#fee2e2;color:#991b1b}
main{flex:1;display:flex;min-height:0}
nav{width:260px;flex:none;background:#fff;border-right:1px solid #d1d5db;padding:8px 12px;overflow-y:auto}
nav h2{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#374151;margin:12px 0 6px}
.count{background:#dc2626;color:#fff;border-radius:999px;padding:0 7px;font-size:12px}
.queue,.mine{list-style:none;margin:0;padding:0}
.queue li,.mine li{display:flex;align-items:center;gap:6px;padding:6px 0;border-bottom:1px solid #f3f4f6}
.queue .room{flex:1;font-weight:600;overflow-wrap:anywhere}
.when{font-size:12px;color:#6b7280}
.empty{color:#6b7280}
.accept{font:inherit;font-weight:600;background:#15803d;color:#fff;border:0;border-radius:8px;padding:4px 10px;cursor:pointer}
.badge{background:#1d4ed8;color:#fff;border-radius:999px;padding:0 7px;font-size:12px}
.chats{flex:1;display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px;padding:12px;overflow:auto}
.pane{display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 2px 8px rgba(0,0,0,.12);min-height:420px;max-height:calc(100vh - 90px);overflow:hidden}
.pane header{display:flex;justify-content:space-between;align-items:center;padding:8px 12px;border-bottom:1px solid #e5e7eb}
.pane h3{margin:0;font-size:15px;overflow-wrap:anywhere}
.pane header p{margin:0;font-size:12px;color:#4b5563}
.pane[data-status=closed] h3{color:#6b7280}
.close-conv,.dismiss{font:inherit;font-size:12px;background:#fff;border:1px solid #b91c1c;color:#b91c1c;border-radius:8px;padding:4px 8px;cursor:pointer}
@media (max-width:640px){main{flex-direction:column}nav{width:auto;max-height:35vh}}
${CSS}`;
