//! The look the HTML pages share (`crate::pages`, `crate::console`),
//! in one place that imports nothing of the crate.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// A whole page titled `title · otpd`: the shared head, with `style`
/// after [`BASE`], around `body`.
pub(crate) fn page(title: &str, style: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · otpd" }
                style { (PreEscaped(BASE)) (PreEscaped(style)) }
            }
            body { (body) }
        }
    }
}

/// The pages' shared look; the console adds its own rules.
pub(crate) const BASE: &str = r#"
:root { color-scheme: light dark; --fg: #111; --bg: #fff; --muted: #4a4a4a; --line: #c8c8c8; --accent: #0b57d0; --code-bg: #fff4c2; }
@media (prefers-color-scheme: dark) { :root { --fg: #f2f2f2; --bg: #161616; --muted: #c2c2c2; --line: #444; --accent: #8ab4f8; --code-bg: #4a3f00; } }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
header, main { max-width: 56rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
p.lead { margin: 0; color: var(--muted); }
form.filter { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin: 1rem 0; }
label { display: flex; flex-direction: column; font-weight: 600; font-size: .9rem; }
select, input, button { font: inherit; padding: .4rem .6rem; border: 1px solid var(--line); border-radius: .3rem; background: var(--bg); color: var(--fg); }
button { cursor: pointer; border-color: var(--accent); color: var(--accent); font-weight: 600; }
button:focus-visible, input:focus-visible, select:focus-visible, a:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
#live { font-size: .9rem; color: var(--muted); }
ol { list-style: none; padding: 0; margin: 0; }
li.msg { border: 1px solid var(--line); border-radius: .4rem; padding: .75rem; margin: 0 0 .75rem; }
.meta { display: flex; flex-wrap: wrap; gap: .25rem 1rem; font-size: .9rem; color: var(--muted); }
.channel { font-weight: 700; text-transform: uppercase; color: var(--fg); }
.to { overflow-wrap: anywhere; }
.subject { font-weight: 600; margin: .25rem 0 0; }
pre.body { white-space: pre-wrap; overflow-wrap: anywhere; margin: .5rem 0; font: inherit; }
.code-row { display: flex; align-items: center; gap: .75rem; flex-wrap: wrap; }
code.code { font: 700 1.5rem/1.2 ui-monospace, monospace; letter-spacing: .1em; background: var(--code-bg); padding: .1rem .5rem; border-radius: .3rem; user-select: all; }
.empty { color: var(--muted); }
"#;

#[cfg(test)]
mod tests {
    use maud::html;

    #[test]
    fn a_page_has_the_shared_head_then_its_own_style_around_its_body() {
        let page = super::page("Dev <outbox>", ".own{}", html! { p { "hi" } }).into_string();
        assert!(
            page.starts_with("<!DOCTYPE html><html lang=\"en\"><head>"),
            "{page}"
        );
        assert!(
            page.contains("<title>Dev &lt;outbox&gt; · otpd</title>"),
            "{page}"
        );
        let base = page.find(super::BASE).expect("the shared style");
        let own = page.find(".own{}").expect("the page's style");
        assert!(base < own, "the page's rules come after the shared ones");
        assert!(page.ends_with("<body><p>hi</p></body></html>"), "{page}");
    }
}
