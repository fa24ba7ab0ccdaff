//! Output of the live table. On a terminal each new table replaces the previous one in place
//! (cursor up + clear, two standard ANSI sequences); anywhere else (a pipe, a file, a CI
//! log) every table is appended as a plain block, so the output stays readable as text.

use std::io::Write;

pub struct Screen<W: Write> {
    out: W,
    redraw: bool,
    /// Lines of the last table still on screen (0 once something else was printed after it).
    table_lines: usize,
}

impl Screen<std::io::Stdout> {
    /// Standard output, redrawing in place only when it is a terminal.
    pub fn stdout() -> Self {
        let redraw = std::io::IsTerminal::is_terminal(&std::io::stdout());
        Screen::new(std::io::stdout(), redraw)
    }
}

impl<W: Write> Screen<W> {
    pub fn new(out: W, redraw: bool) -> Self {
        Self {
            out,
            redraw,
            table_lines: 0,
        }
    }

    /// Shows `block` (lines ending in `\n`), replacing the previous table on a terminal.
    pub fn table(&mut self, block: &str) {
        if self.redraw && self.table_lines > 0 {
            // Up to the first line of the previous table, then clear to the end of screen.
            let _ = write!(self.out, "\x1b[{}F\x1b[J", self.table_lines);
        }
        let _ = self.out.write_all(block.as_bytes());
        if !self.redraw {
            let _ = self.out.write_all(b"\n");
        }
        let _ = self.out.flush();
        self.table_lines = block.lines().count();
    }

    /// Prints text that stays (the next table is drawn below it).
    /// A blank line separates it from a table above, as in plain mode.
    pub fn text(&mut self, text: &str) {
        if self.redraw && self.table_lines > 0 {
            let _ = self.out.write_all(b"\n");
        }
        let _ = self.out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = self.out.write_all(b"\n");
        }
        let _ = self.out.flush();
        self.table_lines = 0;
    }

    #[cfg(test)]
    fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_output_appends_blocks() {
        let mut s = Screen::new(Vec::new(), false);
        s.table("a\nb\n");
        s.table("c\nd\n");
        s.text("done");
        let out = String::from_utf8(s.into_inner()).unwrap();
        assert_eq!(out, "a\nb\n\nc\nd\n\ndone\n");
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn terminal_output_replaces_the_previous_table_only() {
        let mut s = Screen::new(Vec::new(), true);
        s.table("a\nb\n");
        s.table("c\nd\ne\n");
        s.text("note");
        s.table("f\n");
        let out = String::from_utf8(s.into_inner()).unwrap();
        // The second table erases the 2 lines of the first; after a note nothing is erased.
        assert_eq!(out, "a\nb\n\x1b[2F\x1b[Jc\nd\ne\n\nnote\nf\n");
    }
}
