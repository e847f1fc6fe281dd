package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/b2ce5911/sse"
	"github.com/b2ce5911/sse/examples/chat/chat"
)

const (
	testTimeout = 2 * time.Minute  // the whole test, browser start included
	stepTimeout = 20 * time.Second // each wait for the pages
	room        = "e2e-room"
)

// artifactDir is where the screenshots go: $SSE_E2E_ARTIFACTS, or
// e2e/artifacts (ignored by git).
func artifactDir() string {
	if d := os.Getenv("SSE_E2E_ARTIFACTS"); d != "" {
		return d
	}
	return "artifacts"
}

// browser starts headless Chromium, Debian's, with a profile of its own, and
// returns a context for its first tab. It fails when Chromium is missing:
// a browser test that skips proves nothing.
func browser(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): install it with `apt-get update && apt-get install -y chromium`, as `bash scripts/test` does when run as root", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(int(desktop.w), int(desktop.h)),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	first, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	start := time.Now()
	if err := chromedp.Do(first); err != nil { // starts the browser, bound to ctx
		t.Fatalf("start %s: %v", path, err)
	}
	t.Logf("%s started in %v", path, time.Since(start).Round(time.Millisecond))
	return first
}

// page is one browser tab with the chat open.
type page struct {
	t     *testing.T
	name  string
	ctx   context.Context
	close func() // closes the tab
}

// Viewport sizes the screenshots are taken at.
type viewport struct{ w, h int64 }

var (
	desktop = viewport{1200, 800}
	laptop  = viewport{800, 700}
	phone   = viewport{390, 760}
)

// open opens pageURL in a new tab of the browser of ctx, at the size of v.
// What the page writes to the console goes to the test log; an exception,
// an error or a CSP violation fails the test.
func open(t *testing.T, ctx context.Context, name, pageURL string, v viewport) *page {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	var wg sync.WaitGroup
	var once sync.Once
	p := &page{t: t, name: name, ctx: tab, close: func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}}
	t.Cleanup(p.close)
	// The first Run on a tab's context opens the tab and binds it to the
	// context of that call: the tab's own, not one with a step's timeout.
	var opts []chromedp.EmulateViewportOption
	if v == phone {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
	}
	if err := chromedp.Do(tab, chromedp.EmulateViewport(v.w, v.h, opts...)); err != nil {
		t.Fatalf("page %s: new tab: %v", name, err)
	}
	console := chromedp.Console(tab)
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError || strings.Contains(m.Text, "Content Security Policy") {
				t.Errorf("page %s console %s: %s (%s)", name, m.Type, m.Text, m.URL)
			} else {
				t.Logf("page %s console %s: %s", name, m.Type, m.Text)
			}
		}
	})
	p.do("open "+pageURL, chromedp.Navigate(pageURL))
	return p
}

// do runs actions in the tab, within stepTimeout.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("page %s: %s: %v", p.name, what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("page %s: %s: %v", p.name, expr, err)
	}
	return v
}

// waitFor waits until the JavaScript expression is true in the page.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	p.do(what, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout)))
}

func (p *page) waitState(state string) {
	p.t.Helper()
	p.waitFor("state "+state, fmt.Sprintf(`document.getElementById("state").dataset.state === %s`, jsString(state)))
}

// waitMessage waits until the page shows a message of name with text.
func (p *page) waitMessage(name, text string) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("message %q from %s", text, name), fmt.Sprintf(
		`[...document.querySelectorAll("#messages .msg")].some(li =>
			li.querySelector(".name").textContent === %s && li.querySelector(".text").textContent === %s)`,
		jsString(name), jsString(text)))
}

// waitPeople waits until the page lists these names as in the room, in
// order, with itself marked as "(you)".
func (p *page) waitPeople(names ...string) {
	p.t.Helper()
	want, _ := json.Marshal(names)
	p.waitFor(fmt.Sprintf("people %s", want), fmt.Sprintf(`(() => {
		const li = [...document.querySelectorAll("#people li")];
		return JSON.stringify(li.map(l => l.title)) === %s &&
			document.getElementById("people-count").textContent === %s &&
			li.filter(l => l.classList.contains("me")).map(l => l.textContent).join() === document.getElementById("name").value + " (you)";
	})()`, jsString(string(want)), jsString(fmt.Sprint(len(names)))))
}

// setName types a name into the page's name field, as a person would: the
// page takes it when the field changes.
func (p *page) setName(name string) {
	p.t.Helper()
	p.do("name "+name, chromedp.SetValue(chromedp.ID("name"), name),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("name").dispatchEvent(new Event("change"))`))
}

// noticeShown tells whether the page shows the "messages may be missing"
// notice.
func (p *page) noticeShown() bool {
	p.t.Helper()
	return !eval[bool](p, `document.getElementById("notice").hidden`)
}

// state is what the connection state element shows.
func (p *page) state() string {
	p.t.Helper()
	return eval[string](p, `document.getElementById("state").textContent`)
}

// shown is a message as the page shows it.
type shown struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Text string `json:"text"`
	Own  bool   `json:"own"`
}

func (p *page) messages() []shown {
	p.t.Helper()
	return eval[[]shown](p, `[...document.querySelectorAll("#messages .msg")].map(li => ({
		id: li.dataset.id,
		name: li.querySelector(".name").textContent,
		text: li.querySelector(".text").textContent,
		own: li.classList.contains("own"),
	}))`)
}

// exactlyOnce checks that the page shows each text once, and no event id
// twice.
func (p *page) exactlyOnce(texts ...string) {
	p.t.Helper()
	got := p.messages()
	count := make(map[string]int)
	ids := make(map[string]int)
	for _, m := range got {
		count[m.Text]++
		ids[m.ID]++
	}
	for _, text := range texts {
		if count[text] != 1 {
			p.t.Errorf("page %s shows %q %d times, want once; it shows %+v", p.name, text, count[text], got)
		}
	}
	for id, n := range ids {
		if id == "" || n != 1 {
			p.t.Errorf("page %s shows %d messages with id %q; want one, with an id", p.name, n, id)
		}
	}
}

// showsOnly checks that the page shows these texts, in this order, and no
// other message.
func (p *page) showsOnly(texts ...string) []shown {
	p.t.Helper()
	got := p.messages()
	var have []string
	for _, m := range got {
		have = append(have, m.Text)
	}
	if strings.Join(have, "\n") != strings.Join(texts, "\n") {
		p.t.Errorf("page %s shows %q, want %q", p.name, have, texts)
	}
	p.exactlyOnce(texts...)
	return got
}

// own checks that the page marks as its own the messages with these
// texts, and only them.
func (p *page) own(texts ...string) {
	p.t.Helper()
	for _, m := range p.messages() {
		if want := slices.Contains(texts, m.Text); m.Own != want {
			p.t.Errorf("page %s marks %q from %s as its own: %v, want %v", p.name, m.Text, m.Name, m.Own, want)
		}
	}
}

// typeMessage sends a message through the page's form, as a person would.
func (p *page) typeMessage(name, text string) {
	p.t.Helper()
	if got := eval[string](p, `document.getElementById("name").value`); got != name {
		p.t.Fatalf("page %s is named %q, not %q", p.name, got, name)
	}
	p.do("type "+text,
		chromedp.SendKeys(chromedp.ID("text"), text),
		chromedp.Click(chromedp.ID("send-button")),
	)
}

// screenshot saves what the page shows as NN-step-page.png in the
// artifacts directory.
func (p *page) screenshot(step string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("page %s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(artifactDir(), step+"-"+p.name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	p.t.Logf("screenshot %s", abs)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// post sends a message the way a client other than the pages would.
func post(t *testing.T, serverURL, name, text string) {
	t.Helper()
	resp, err := http.PostForm(serverURL+"/send", url.Values{"room": {room}, "name": {name}, "text": {text}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("send %q: %s %s", text, resp.Status, b)
	}
}

// waitSubscribers waits until the Hub in service has n streams open.
func waitSubscribers(t *testing.T, s *chat.Server, n int) {
	t.Helper()
	waitStats(t, s, fmt.Sprintf("%d streams open", n), func(st sse.HubStats) bool { return st.Subscribers == n })
}

// waitStats waits until the counters of the Hub in service satisfy ok.
func waitStats(t *testing.T, s *chat.Server, what string, ok func(sse.HubStats) bool) {
	t.Helper()
	deadline := time.Now().Add(stepTimeout)
	for !ok(s.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("server: waited %v for %s; stats %+v", stepTimeout, what, s.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// steady checks the layout of the pages at their sizes: no horizontal
// scrolling, and a header that keeps its height whatever the connection
// state says, on one line where the page is wider than a phone.
func steady(t *testing.T, pages ...*page) {
	t.Helper()
	for _, p := range pages {
		heights := eval[[]int](p, `(() => {
			const h = [];
			for (const s of ["connecting", "reconnecting", "closed", "open"]) {
				setState(s);
				h.push(document.querySelector("header").offsetHeight);
			}
			setState(es.readyState === EventSource.OPEN ? "open" : "reconnecting");
			return h;
		})()`)
		if slices.Min(heights) != slices.Max(heights) {
			t.Errorf("page %s: the header is %v px high for the states connecting, reconnecting, closed, open", p.name, heights)
		}
		if wide := eval[bool](p, `innerWidth > 640`); wide && heights[0] > 70 {
			t.Errorf("page %s: the header is %d px high: more than one line", p.name, heights[0])
		}
		if over := eval[int](p, `document.documentElement.scrollWidth - innerWidth`); over > 0 {
			t.Errorf("page %s scrolls sideways by %d px", p.name, over)
		}
	}
}

// TestChatInBrowsers drives Chromium tabs through the life of a chat: two
// tabs in a room see each other and each other's messages; the server drops
// every connection while messages are sent, and the pages show each message
// once; a reloaded tab keeps its name and shows the room's history once; a
// third tab, phone-sized, comes and goes and the others see it; the server
// restarts with a new epoch, the tabs that showed messages say that some
// may be missing, a tab that showed none says nothing, and reloading clears
// the notice. Each step leaves a screenshot of every tab in artifactDir().
func TestChatInBrowsers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	if err := os.MkdirAll(artifactDir(), 0o755); err != nil {
		t.Fatal(err)
	}

	s := chat.New(slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	ts := httptest.NewServer(s) // 127.0.0.1 only
	t.Cleanup(ts.Close)
	t.Cleanup(func() { s.Shutdown(context.Background()) })

	first := browser(t, ctx)
	pageURL := ts.URL + "/#" + room
	a := open(t, first, "a-1200px", pageURL, desktop)
	b := open(t, first, "b-800px", pageURL, laptop)
	pages := []*page{a, b}
	step := func(name string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		t.Logf("step %s: %v", name, time.Since(start).Round(time.Millisecond))
		for _, p := range pages {
			p.screenshot(name)
		}
	}

	step("01-open", func() {
		a.setName("alice")
		b.setName("bob")
		for _, p := range pages {
			p.waitState("open")
			p.waitPeople("alice", "bob")
		}
	})

	history := []string{"hello from a <b>tab</b>", "hi alice"}
	step("01-layout", func() { steady(t, a, b) })

	step("02-message", func() {
		a.typeMessage("alice", history[0])
		for _, p := range pages {
			p.waitMessage("alice", history[0])
		}
		b.typeMessage("bob", history[1])
		for _, p := range pages {
			p.waitMessage("bob", history[1])
			p.showsOnly(history...)
		}
		a.own(history[0])
		b.own(history[1])
	})

	step("03-reconnect", func() {
		s.DropConnections()
		for i := 1; i <= 5; i++ {
			text := fmt.Sprintf("while away %d", i)
			post(t, ts.URL, "carol", text)
			history = append(history, text)
		}
		t.Logf("after the drop and 5 messages: page a %s, page b %s", a.state(), b.state())
		waitSubscribers(t, s, 2)
		for _, p := range pages {
			p.waitState("open")
		}
		// Events come in order: once the last message shows, a duplicate
		// of an earlier one would have shown too.
		post(t, ts.URL, "carol", "back again")
		history = append(history, "back again")
		for _, p := range pages {
			p.waitMessage("carol", "back again")
			p.showsOnly(history...)
		}
	})

	step("04-reload", func() {
		b.do("reload", chromedp.Reload())
		b.waitState("open")
		b.waitMessage("carol", "back again") // the last of the history
		for _, p := range pages {
			p.waitPeople("alice", "bob")
		}
		b.showsOnly(history...)
		b.own(history[1])
		for p, want := range map[*page]string{a: "alice", b: "bob"} {
			if got := eval[string](p, `document.getElementById("name").value`); got != want {
				t.Errorf("page %s is named %q after b reloaded, want %q", p.name, got, want)
			}
		}
		a.showsOnly(history...)
	})

	var c *page
	step("05-phone", func() {
		c = open(t, first, "c-390px", pageURL, phone)
		pages = append(pages, c)
		c.setName("carol")
		c.waitState("open")
		steady(t, c)
		for _, p := range pages {
			p.waitPeople("alice", "bob", "carol")
		}
		c.waitMessage("carol", "back again")
		c.showsOnly(history...)
		c.own() // what carol sent by other means is not this tab's
		c.typeMessage("carol", "from a phone")
		history = append(history, "from a phone")
		for _, p := range pages {
			p.waitMessage("carol", "from a phone")
		}
		a.own(history[0])
		c.own("from a phone")
		if n := len(c.messages()) - len(history); n != 0 {
			t.Errorf("page c shows %d messages more than the history", n)
		}
	})

	step("06-left", func() {
		c.screenshot("06-left") // before it goes
		c.close()
		pages = pages[:2]
		for _, p := range pages {
			p.waitPeople("alice", "bob")
		}
	})

	// A tab of another room that has shown no message: a reset loses
	// nothing it showed.
	quiet := open(t, first, "d-quiet-800px", ts.URL+"/#e2e-quiet", laptop)
	quiet.waitState("open")
	quiet.waitPeople(eval[string](quiet, `document.getElementById("name").value`))
	pages = append(pages, quiet)

	step("07-reset", func() {
		s.Restart()
		for _, p := range pages {
			p.waitFor("reset", `document.body.dataset.resets >= 1`)
			p.waitState("open")
		}
		for _, p := range []*page{a, b} {
			p.do("reset notice", chromedp.WaitVisible(chromedp.ID("notice")))
			p.waitPeople("alice", "bob")
			p.showsOnly(history...) // kept, above the line that says some may be missing
			if n := eval[int](p, `document.querySelectorAll("#messages .gap").length`); n != 1 {
				t.Errorf("page %s shows %d gap lines, want 1", p.name, n)
			}
		}
		if quiet.noticeShown() {
			t.Error("page d shows the reset notice, but it had shown no message")
		}
		a.typeMessage("alice", "after the restart")
		for _, p := range []*page{a, b} {
			p.waitMessage("alice", "after the restart")
			p.showsOnly(append(history, "after the restart")...)
		}
	})

	step("08-reloaded", func() {
		b.do("reload", chromedp.Reload())
		b.waitState("open")
		b.waitMessage("alice", "after the restart")
		b.showsOnly("after the restart") // the history of the new epoch
		if b.noticeShown() {
			t.Error("page b shows the reset notice after reloading")
		}
		a.do("reload the room", chromedp.Click(chromedp.ID("rejoin")), chromedp.WaitNotVisible(chromedp.ID("notice")))
		a.waitState("open")
		a.waitMessage("alice", "after the restart")
		a.showsOnly("after the restart")
		a.own("after the restart")
		for _, p := range []*page{a, b} {
			p.waitPeople("alice", "bob")
		}
	})
}

// testWriter sends the server's log to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
