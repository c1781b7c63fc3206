// The console's stylesheet (built into dist/console.css with the chat view's rules).
import { CSS } from '../ui/chat.js';

export default `
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;background:#eef0f3;height:100vh;display:flex;flex-direction:column}
.top{display:flex;flex-wrap:wrap;gap:8px;justify-content:space-between;align-items:center;padding:8px 16px;background:#111827;color:#fff}
.top h1{font-size:16px;margin:0}
.controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;font-size:13px}
.controls select,.controls input{font:inherit;padding:2px 4px;border-radius:6px;border:1px solid #9ca3af}
.controls input{width:4em}
.controls button{font:inherit;font-size:12px;background:#fff;color:#111827;border:0;border-radius:8px;padding:4px 10px;cursor:pointer}
.controls button[aria-pressed=true]{background:#fde68a}
.agent-state{color:#d1d5db}
.error{margin:0;padding:6px 16px;background:#fee2e2;color:#991b1b}
main{flex:1;display:flex;min-height:0}
nav{width:290px;flex:none;background:#fff;border-right:1px solid #d1d5db;padding:8px 12px;overflow-y:auto}
nav h2{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#374151;margin:12px 0 6px}
.search{display:flex;flex-direction:column;gap:2px;font-size:12px;color:#374151}
.search input{font:inherit;font-size:14px;padding:4px 8px;border:1px solid #9ca3af;border-radius:8px}
.count{background:#dc2626;color:#fff;border-radius:999px;padding:0 7px;font-size:12px}
.conversations{list-style:none;margin:0;padding:0}
.conversations li{display:flex;align-items:center;gap:6px;padding:6px 0;border-bottom:1px solid #f3f4f6}
.conv{flex:1;min-width:0}
.conv .who{display:flex;flex-wrap:wrap;gap:0 6px;margin:0;font-size:14px;color:#111827}
.conv .name{font-weight:600;overflow-wrap:anywhere}
.conv .email{font-size:12px;color:#4b5563;overflow-wrap:anywhere}
.last{font-size:12px;color:#374151;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;unicode-bidi:isolate}
.state{display:flex;gap:6px;align-items:center}
.when{font-size:12px;color:#4b5563}
.empty{color:#4b5563}
.accept{font:inherit;font-weight:600;background:#15803d;color:#fff;border:0;border-radius:8px;padding:4px 10px;cursor:pointer}
.open{font:inherit;font-size:12px;background:#fff;color:#1d4ed8;border:1px solid #1d4ed8;border-radius:8px;padding:3px 8px;cursor:pointer}
.badge{background:#1d4ed8;color:#fff;border-radius:999px;padding:0 7px;font-size:12px}
.chats{flex:1;display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px;padding:12px;overflow:auto}
.pane{display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 2px 8px rgba(0,0,0,.12);min-height:420px;max-height:calc(100vh - 100px);overflow:hidden}
.pane header{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:6px;padding:8px 12px;border-bottom:1px solid #e5e7eb}
.pane h3{margin:0;font-size:15px;overflow-wrap:anywhere}
.pane h3 .room{font-size:12px;font-weight:400;color:#4b5563}
.pane header p{margin:0;font-size:12px;color:#4b5563}
.pane[data-status=closed] h3{color:#4b5563}
.tools,.confirm{flex-basis:100%;display:flex;flex-wrap:wrap;gap:6px;align-items:center;font-size:12px}
.confirm{background:#fef2f2;border-radius:8px;padding:6px}
.tools select{font:inherit;max-width:170px}
.pane header button{font:inherit;font-size:12px;background:#fff;border:1px solid #374151;color:#111827;border-radius:8px;padding:3px 8px;cursor:pointer}
.pane header .close-conv,.pane header .dismiss,.pane header .block,.pane header .block-yes{border-color:#b91c1c;color:#b91c1c}
.pane button:disabled{opacity:.6;cursor:default}
.del{font:inherit;font-size:11px;background:none;border:0;color:#b91c1c;text-decoration:underline;cursor:pointer;padding:0 2px}
.pane:not([data-mine]) .them .del{display:none}
@media (max-width:640px){main{flex-direction:column}nav{width:auto;max-height:35vh}}
${CSS}`;
