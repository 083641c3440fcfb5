import json, os, subprocess, time, urllib.request, http.cookiejar, sys, re
BIN=sys.argv[1]
env=dict(os.environ, MCPOBS_ADMIN_PASSWORD="fixture-pass-1")
p=subprocess.Popen([BIN,"serve","--data","data","--listen","127.0.0.1:0"],env=env,stderr=subprocess.PIPE,text=True)
base=None
while base is None:
    line=p.stderr.readline()
    m=re.search(r"listening on (http://\S+)",line)
    if m: base=m.group(1)
cj=http.cookiejar.CookieJar(); op=urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cj))
def req(method,path,body=None,headers={}):
    r=urllib.request.Request(base+path,method=method,data=None if body is None else json.dumps(body).encode(),headers={"content-type":"application/json",**headers})
    return json.loads(op.open(r).read() or b"{}")
s=req("POST","/api/v1/session",{"username":"admin","password":"fixture-pass-1"})
csrf={"x-csrf-token":s["csrf_token"]}
srv=req("POST","/api/v1/orgs/default/servers",{"name":"fixture","telemetry_enabled":True,"sampling_rate":1.0},csrf)
key=srv["api_key"]["key"]
day0=1795132800*10**9  # 2026-11-20T00:00:00Z
tools=["search","fetch","write_file"]; users=["alice","bob",None]
spans=[]
for i in range(60):
    st=day0+i*97*10**9+i*12345
    attrs=[{"key":"mcp.method.name","value":{"stringValue":"tools/call" if i%6 else "tools/list"}}]
    if i%6: attrs.append({"key":"gen_ai.tool.name","value":{"stringValue":tools[i%3]}})
    u=users[i%3]
    if u: attrs.append({"key":"enduser.id","value":{"stringValue":u}})
    attrs.append({"key":"mcp.session.id","value":{"stringValue":"s%d"%(i%4)}})
    attrs.append({"key":"mcp.client.name","value":{"stringValue":"claude-code"}})
    if i%7==0: attrs.append({"key":"error.type","value":{"stringValue":"tool_error"}})
    sp={"traceId":"%032x"%(i+1),"spanId":"%016x"%(i+1),"name":"tools/call x","kind":2,
        "startTimeUnixNano":str(st),"endTimeUnixNano":str(st+(i+1)*1_700_000),"attributes":attrs}
    if i%5==0: sp["traceState"]="ot=th:8"
    if i%7==0: sp["status"]={"code":2,"message":"boom"}
    spans.append(sp)
body={"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"fixture"}}]},"scopeSpans":[{"spans":spans}]}]}
r=urllib.request.Request(base+"/v1/traces",data=json.dumps(body).encode(),headers={"content-type":"application/json","authorization":"Bearer "+key})
print(urllib.request.urlopen(r).read())
# FIXTURE_WAIT_S (spans-v3): let compactions (every 10 s) roll and seal the finished day first.
time.sleep(float(os.environ.get("FIXTURE_WAIT_S", "0")))
p.terminate(); p.wait()
